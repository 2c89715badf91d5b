//! Run-time index estimation on the device.

pub mod block_sparse;
pub mod select;
pub mod vertical_slash;
