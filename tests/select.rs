//! The device's top-k selection (`minference_kernels::estimate::select`) against a host sort, on
//! Vulkan (lavapipe in CI): rows longer than a cube's units, budgets from one to the whole row,
//! ties, forced entries and NaN keys, with the rounds that stop once the choice is exact (the
//! Block-Sparse rows') and with all sixteen (the Vertical-Slash rows'). The index tests reach the
//! selection through whole layers, whose rows are short; here every unit of the cube owns
//! entries. On CUDA the same selection is checked by `minference-gpu-bench` (through the device
//! index).

#![cfg(feature = "vulkan")]

use burn::tensor::Tensor;
use cubecl::prelude::*;
use minference_kernels::estimate::select::{top_rows, FORCED, ROW_UNITS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type B = minference::backend::Vulkan;
type R = burn::backend::wgpu::WgpuRuntime;

/// What an unwritten slot of the output holds.
const POISON: u32 = 0xDEAD_BEEF;

/// The `budget` largest of `keys` (ties by lower index), ascending: the host's rule.
fn host_top(keys: &[u32], budget: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[b].cmp(&keys[a]).then(a.cmp(&b)));
    let mut chosen: Vec<u32> = order[..budget].iter().map(|&i| i as u32).collect();
    chosen.sort_unstable();
    chosen
}

/// A row of `len` keys drawn from `distinct` values (few values: many ties), some forced and
/// some the NaN key (0).
fn row(rng: &mut StdRng, len: usize, distinct: u32) -> Vec<u32> {
    (0..len)
        .map(|_| match rng.random_range(0..100) {
            0 => FORCED,
            1 => 0,
            _ => 1 + rng.random_range(0..distinct) * ((u32::MAX - 2) / distinct),
        })
        .collect()
}

#[test]
fn selection_equals_a_host_sort() {
    selection_equals_a_host_sort_with(false);
}

#[test]
fn selection_stopping_once_exact_equals_a_host_sort() {
    selection_equals_a_host_sort_with(true);
}

fn selection_equals_a_host_sort_with(stop_early: bool) {
    let device = Default::default();
    let client = Tensor::<B, 1>::zeros([1], &device)
        .into_primitive()
        .tensor()
        .client;
    let mut rng = StdRng::seed_from_u64(7);
    // Columns and diagonals of each row: longer than the cube (512 units) and not a multiple of
    // it, so that the last units own fewer entries.
    let (batch, heads, n_keys, diagonals) = (2, 3, 3001, 700);
    let row_len = n_keys + diagonals;
    let distinct = [3, 40, 1 << 20];
    let mut keys = Vec::new();
    for bh in 0..batch * heads {
        let d = distinct[bh % distinct.len()];
        keys.extend(row(&mut rng, n_keys, d));
        keys.extend(row(&mut rng, diagonals, d));
    }
    // (columns, diagonals) per head: one, the whole row, none, and in between.
    let budgets: [u32; 6] = [1, 700, 2999, 0, 3001, 137];
    let width = n_keys;
    let chosen_len = batch * heads * 2 * width;
    let keys_h = client.create_from_slice(u32::as_bytes(&keys));
    let budgets_h = client.create_from_slice(u32::as_bytes(&budgets));
    let chosen_h = client.create_from_slice(u32::as_bytes(&vec![POISON; chosen_len]));
    unsafe {
        top_rows::launch_unchecked::<R>(
            &client,
            CubeCount::Static(2, heads as u32, batch as u32),
            CubeDim::new_1d(ROW_UNITS as u32),
            ArrayArg::from_raw_parts(keys_h, keys.len()),
            ArrayArg::from_raw_parts(budgets_h, budgets.len()),
            ArrayArg::from_raw_parts(chosen_h.clone(), chosen_len),
            n_keys as u32,
            diagonals as u32,
            width as u32,
            stop_early,
        );
    }
    let chosen = u32::from_bytes(&client.read_one_unchecked(chosen_h)).to_vec();
    for b in 0..batch {
        for h in 0..heads {
            let bh = b * heads + h;
            for which in 0..2 {
                let (start, len) = if which == 0 {
                    (bh * row_len, n_keys)
                } else {
                    (bh * row_len + n_keys, diagonals)
                };
                let budget = budgets[2 * h + which] as usize;
                let out = &chosen[(bh * 2 + which) * width..][..width];
                let at = format!("head {bh}, kind {which}, budget {budget}");
                if budget > 0 {
                    let want = host_top(&keys[start..start + len], budget);
                    assert_eq!(&out[..budget], &want[..], "{at}");
                }
                assert!(
                    out[budget..].iter().all(|&x| x == POISON),
                    "{at}: written past the budget"
                );
            }
        }
    }
}
