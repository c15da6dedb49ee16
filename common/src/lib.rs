//! What pimd, pim and pam_pim.so agree on: the bus names, the interface (as a proxy), the PAM
//! socket (its path and framing), the errors with their stable D-Bus names, the wire types, the
//! vocabulary of their enumerated values and the duration syntax.
#![forbid(unsafe_code)]

pub mod chain;
pub mod code_refusal;
pub mod duration;
pub mod error;
#[cfg(any(test, feature = "introspection"))]
pub mod introspection;
pub mod limits;
pub mod mounts;
pub mod pam_socket;
pub mod proxy;
pub mod reload;
pub mod text;
pub mod types;
pub mod vantage;
pub mod vocab;

pub use error::PimError;

/// Well-known bus name the daemon owns on the system bus.
pub const BUS_NAME: &str = "org.pim.Manager1";
/// Object path of the one manager object.
pub const OBJECT_PATH: &str = "/org/pim/Manager1";
/// Interface name (also the prefix of every error name).
pub const INTERFACE: &str = "org.pim.Manager1";
