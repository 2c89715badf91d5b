//! Run-time index estimation on the device.

pub mod block_sparse;
pub mod vertical_slash;
