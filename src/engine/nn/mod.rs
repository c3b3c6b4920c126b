//! Tensor building blocks shared by the engines, each written once with its own
//! unit test: weight-norm folding, recurrent layers, norms, signal ops.

pub mod weight_norm;

pub use weight_norm::{conv1d, conv_transpose1d, fold_weight_norm};
pub mod conv;
pub use conv::GemmConv1d;
pub mod lstm;
pub use lstm::Lstm;
pub mod norm;
pub mod ops;
pub mod stft;
