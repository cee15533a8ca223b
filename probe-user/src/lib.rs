//! Probe: a non-stop snapshot debugger for Go programs.
//!
//! The pipeline, one module per noun (see docs/ARCHITECTURE.md):
//! [`target`] → [`binary`] → [`dwarf`] → [`resolve`] (resolved probe) →
//! [`capture`] (capture plan) → [`kernel`] (eBPF maps, uprobes) → [`rings`] (events) →
//! [`decode`] → [`value`] → [`output`]; [`session`] runs it for `probe attach`,
//! [`daemon`] for `probe daemon` (many breakpoints, controlled over gRPC).
//!
//! `binary`, `dwarf`, `pclntab`, `abi`, `prologue`, `resolve`, `capture`, `decode`, `value` and `output` use
//! neither aya nor tokio, so they unit-test without root.

pub mod abi;
pub mod binary;
pub mod capture;
pub mod cond;
pub mod daemon;
pub mod decode;
pub mod doctor;
pub mod dwarf;
pub mod error;
pub mod features;
pub mod kernel;
pub mod otlp;
pub mod output;
pub mod pclntab;
pub mod prologue;
pub mod resolve;
pub mod rings;
pub mod session;
pub mod target;
pub mod value;

pub use error::Error;
