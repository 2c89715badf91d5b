//! Whether a device stops long shader loops, measured once per device.
//!
//! Mesa's llvmpipe (lavapipe, the Vulkan driver of CI) guards against endless shaders with one
//! counter per invocation: after `LP_MAX_TGSI_LOOP_ITERATIONS` (65535) loop iterations in all,
//! every loop of that invocation exits after its current pass, silently. A kernel whose rows
//! need more iterations returns truncated sums (NaN or wrong rows), so the portable kernel's
//! launcher asks [`loop_cap`] and splits long rows over several launches on such devices. The
//! probe is a loop of known length whose count comes back: no device name list to keep.

use crate::KernelError;
use cubecl::prelude::*;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Iterations the probe asks for: more than any cap it should find.
const PROBE: u32 = 1 << 20;

/// Counts the iterations of a loop of `n` passes. Each pass reads its increment, so no
/// compiler folds the loop into `count = n`.
#[cube(launch)]
fn count_iterations(step: &Array<u32>, count: &mut Array<u32>, n: u32) {
    let mut total = 0u32;
    for i in 0..n {
        total += step[(i % 2u32) as usize];
    }
    count[0] = total;
}

/// The number of loop iterations after which one invocation's loops stop on `client`'s device,
/// or `None` where a `PROBE`-long (2²⁰ iterations) loop runs in full. Measured on first use,
/// then cached per runtime and hardware description.
pub fn loop_cap<R: Runtime>(client: &ComputeClient<R>) -> Result<Option<u64>, KernelError> {
    type Key = (String, cubecl::ir::HardwareProperties);
    static CAPS: OnceLock<Mutex<HashMap<Key, Option<u64>>>> = OnceLock::new();
    let key = (
        R::name(client).to_string(),
        client.properties().hardware.clone(),
    );
    let caps = CAPS.get_or_init(Default::default);
    if let Some(cap) = caps.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(*cap);
    }
    let step = client.create_from_slice(u32::as_bytes(&[1, 1]));
    let count = client.empty(4);
    // SAFETY: `step` holds two u32 and `count` one, the lengths given; one unit runs.
    unsafe {
        count_iterations::launch::<R>(
            client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            ArrayArg::from_raw_parts(step, 2),
            ArrayArg::from_raw_parts(count.clone(), 1),
            PROBE,
        );
    }
    let bytes = client
        .read_one(count)
        .map_err(|e| KernelError::Device(format!("{e:?}")))?;
    let counted = u32::from_bytes(&bytes)[0];
    let cap = (counted < PROBE).then_some(u64::from(counted));
    caps.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, cap);
    Ok(cap)
}
