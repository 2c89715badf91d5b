//! Contiguous copies into a device buffer at an element offset: how a layer run in passes
//! assembles its output.
//!
//! A layer past 2³² elements a buffer ([`crate::limits`]) runs as several passes, each with its
//! own output; their parts go into the layer's one output here, each copy addressing only its
//! part (32-bit offsets relative to the part's start). Burn's slice assignment would index the
//! whole output, which past 2³² elements takes CubeCL's 64-bit addresses, where cubecl-std
//! 0.10's `FastDivmod` fails to launch for many shapes (a 64-bit multiplier at or above 2⁶³
//! does not fit the `i64` it is converted through).

use crate::{limits, KernelError};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Units per cube, and the most cubes along x (wgpu's per-dimension limit).
const UNITS: u32 = 256;
const MAX_CUBES_X: u32 = 65535;

#[cube(launch_unchecked)]
fn copy_elements<E: CubePrimitive>(src: &Array<E>, dst: &mut Array<E>, last: u32) {
    // `last`, not the length: a part of exactly 2³² elements has a last index but no u32 length.
    // Cubes past the last one (the 2-D grid rounds up) stop before their offsets could wrap.
    let cube = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    if cube <= last / CUBE_DIM_X {
        let i = cube * CUBE_DIM_X + UNIT_POS_X;
        if i <= last {
            dst[i as usize] = src[i as usize];
        }
    }
}

/// Copies the first `len` elements of `src` into `dst` from element `offset` on.
pub fn copy_into<R: Runtime, E: CubePrimitive + CubeElement>(
    client: &ComputeClient<R>,
    src: &Handle,
    dst: &Handle,
    offset: usize,
    len: usize,
) -> Result<(), KernelError> {
    limits::check_len("a copied part", len)?;
    let size = size_of::<E>();
    if src.size() < (len * size) as u64 || dst.size() < ((offset + len) * size) as u64 {
        return Err(KernelError::Index(format!(
            "copying {len} elements to offset {offset}: source holds {} bytes, destination {}",
            src.size(),
            dst.size()
        )));
    }
    if len == 0 {
        return Ok(());
    }
    let cubes = len.div_ceil(UNITS as usize) as u32;
    let x = cubes.min(MAX_CUBES_X);
    let part = dst.clone().offset_start((offset * size) as u64);
    // SAFETY: both arrays are bound with `len` elements, which both buffers hold (checked above),
    // and the kernel touches only indices up to `len − 1`.
    unsafe {
        copy_elements::launch_unchecked::<E, R>(
            client,
            CubeCount::Static(x, cubes.div_ceil(x), 1),
            CubeDim::new_1d(UNITS),
            ArrayArg::from_raw_parts(src.clone(), len),
            ArrayArg::from_raw_parts(part, len),
            (len - 1) as u32,
        );
    }
    Ok(())
}
