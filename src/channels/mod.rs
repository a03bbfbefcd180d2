//! The other sides wharf sends to, each a channel of the outbound queue ([`crate::outbound`]): its
//! actions, what it sends for each, and how it reads the answers.

pub mod affiliate;
pub mod sftp;
pub mod shoppingfeed;
pub mod smtp;
pub mod sync;
pub mod warehouse;
