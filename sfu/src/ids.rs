//! Identifiers. Each is a newtype so a producer id can never be passed where a peer id belongs.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// One WebRTC connection (one browser tab, one site, the studio).
    PeerId,
    "p"
);
id_type!(
    /// One incoming track: what a peer publishes on one m-line.
    ProducerId,
    "producer"
);
id_type!(
    /// One outgoing track: a producer forwarded to one peer.
    ConsumerId,
    "consumer"
);
id_type!(
    /// One meeting's routing domain.
    RouterId,
    "router"
);
