//! Connections per client address, counted over all shards.
//!
//! Each address has one *home* shard ([`home`]) that keeps its counts; a connection accepted
//! by any shard asks the home shard for a slot ([`acquire`], an `invoke_on` the home) and gives
//! it back when it ends ([`Slot`]'s `Drop` sends the release there). Nothing is shared between
//! shards.
//!
//! Two caps, one count per connection:
//! - every TCP connection on the HTTP port holds one [`Kind::Connection`] slot from the moment
//!   it is accepted until it closes (cap `server.max_connections_per_ip`), a WebSocket
//!   included: the upgrade keeps the slot the connection already had;
//! - a connection that upgrades to a WebSocket also holds a [`Kind::Socket`] slot (cap
//!   `server.socket.max_connections_per_ip`), a sub-count of the first.
//!
//! So an address holds at most `server.max_connections_per_ip` connections, of which at most
//! `server.socket.max_connections_per_ip` are WebSockets.
//!
//! IPv4 addresses (also when seen as IPv4-mapped IPv6) count one by one; IPv6 addresses count
//! per /64 network, the block one subscriber usually gets, so that rotating through one's own
//! addresses does not multiply the cap.

use crate::runtime::{shard_of, Invoke, Sharded};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::rc::Rc;

/// Which count a slot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any connection on the HTTP port (plain HTTP or WebSocket).
    Connection,
    /// An upgraded WebSocket (also holding a `Connection` slot).
    Socket,
}

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::Connection => 0,
            Kind::Socket => 1,
        }
    }
}

/// The counts of the addresses whose home is this shard.
#[derive(Debug, Default)]
pub struct IpCounts {
    counts: HashMap<IpAddr, [usize; 2]>,
}

impl IpCounts {
    /// Counts one more `kind` connection for `ip` (a [`key`]) unless it already has `max`.
    pub fn acquire(&mut self, ip: IpAddr, kind: Kind, max: usize) -> bool {
        let count = &mut self.counts.entry(ip).or_default()[kind.index()];
        let ok = *count < max;
        if ok {
            *count += 1;
        } else if self.counts.get(&ip) == Some(&[0, 0]) {
            self.counts.remove(&ip);
        }
        ok
    }

    pub fn release(&mut self, ip: IpAddr, kind: Kind) {
        if let Some(counts) = self.counts.get_mut(&ip) {
            let c = &mut counts[kind.index()];
            *c = c.saturating_sub(1);
            if *counts == [0, 0] {
                self.counts.remove(&ip);
            }
        }
    }

    /// The `kind` connections counted for `ip` (a [`key`]).
    pub fn count(&self, ip: IpAddr, kind: Kind) -> usize {
        self.counts.get(&ip).map_or(0, |c| c[kind.index()])
    }

    /// Open connections of `kind` from every address this shard counts.
    pub fn total(&self, kind: Kind) -> usize {
        self.counts.values().map(|c| c[kind.index()]).sum()
    }
}

/// The address a connection is counted under: IPv4 as is (unmapped from IPv6), IPv6 by its /64.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// The shard that counts connections from `ip` (already a [`key`]).
pub fn home(ip: IpAddr, shards: usize) -> usize {
    let key = match ip {
        IpAddr::V4(v4) => u32::from(v4) as u64,
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (b as u64) ^ ((b >> 64) as u64)
        }
    };
    shard_of(key, shards)
}

/// What counting needs from the shard it runs on.
pub trait IpHost: Sharded {
    fn ip_counts(&self) -> &RefCell<IpCounts>;
    /// The cap for `kind` connections per address.
    fn ip_cap(&self, kind: Kind) -> usize;
}

/// A counted connection; gives its slot back (on the home shard) when dropped.
#[must_use = "the slot is released when dropped"]
pub struct Slot<S: IpHost> {
    shard: Rc<S>,
    ip: IpAddr,
    kind: Kind,
}

impl<S: IpHost> Drop for Slot<S> {
    fn drop(&mut self) {
        let (ip, kind) = (self.ip, self.kind);
        let home = home(ip, self.shard.here().count());
        self.shard.send_to(home, move |s| s.ip_counts().borrow_mut().release(ip, kind));
    }
}

/// Asks the home shard of `ip` for a `kind` slot; `None` when the address is at its cap (or
/// the home shard has stopped).
pub async fn acquire<S: IpHost>(this: &Rc<S>, ip: IpAddr, kind: Kind) -> Option<Slot<S>> {
    let ip = key(ip);
    let home = home(ip, this.here().count());
    let counted = this.invoke_on(home, move |s| s.ip_counts().borrow_mut().acquire(ip, kind, s.ip_cap(kind))).await;
    counted.unwrap_or(false).then(|| Slot { shard: this.clone(), ip, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_kind_and_forgets_addresses_at_zero() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut c = IpCounts::default();
        assert!(c.acquire(ip, Kind::Connection, 2));
        assert!(c.acquire(ip, Kind::Connection, 2));
        assert!(!c.acquire(ip, Kind::Connection, 2));
        assert!(c.acquire(ip, Kind::Socket, 1));
        assert!(!c.acquire(ip, Kind::Socket, 1));
        assert_eq!((c.count(ip, Kind::Connection), c.count(ip, Kind::Socket)), (2, 1));
        c.release(ip, Kind::Socket);
        c.release(ip, Kind::Connection);
        c.release(ip, Kind::Connection);
        assert!(c.counts.is_empty());
        assert!(!c.acquire(ip, Kind::Socket, 0));
        assert!(c.counts.is_empty(), "a refused first acquire leaves nothing behind");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(other));
        assert_eq!(key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(key("192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
