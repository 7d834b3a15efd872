//! A UDP relay that stands between the nodes of a [`Cluster`] so a test can
//! cut one node off from the others (a network partition) and heal it,
//! without network namespaces or root.
//!
//! For every node the relay binds a *front* socket on `127.0.0.1:0`; the
//! nodes are configured to dial each other's front addresses instead of the
//! real ones. A datagram from some node's real QUIC socket `S` to node `B`'s
//! front is sent on to `B`'s real address from an *upstream* socket made for
//! the pair `(S, B)` on first use, and what `B` answers on that upstream
//! socket goes back to `S` from `B`'s front: a tiny NAT. Each side therefore
//! sees one stable peer address per connection, which is all QUIC needs
//! (node identity is checked by TLS certificate names, not by address).
//!
//! ```text
//!   node A (S = A's real raft addr) ──▶ front(B) ──▶ upstream(S, B) ──▶ B's real raft addr
//!                                   ◀── front(B) ◀── upstream(S, B) ◀──
//! ```
//!
//! [`Relay::isolate`] drops every datagram to or from a node, in both
//! directions and on NAT entries that already exist, until [`Relay::heal`].
//! Nothing is queued while a node is isolated: QUIC sees plain loss.
//!
//! Every socket is served by its own thread, polling with a short read
//! timeout; dropping the [`Relay`] stops and joins them all within about
//! [`POLL`].
//!
//! [`Cluster`]: crate::Cluster

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Read timeout of every relay socket: how often a thread checks whether
/// the relay is being dropped, so the longest a drop waits.
pub const POLL: Duration = Duration::from_millis(25);

/// Larger than any UDP payload.
const DATAGRAM_MAX: usize = 65_536;

/// A running relay over a fixed set of nodes (see the module docs).
#[derive(Debug)]
pub struct Relay {
    fronts: BTreeMap<u64, SocketAddr>,
    links: Arc<Links>,
    /// One per front socket; each joins the upstream threads it started.
    threads: Vec<JoinHandle<()>>,
}

/// What every relay thread shares: who is who, who is cut off, counters.
#[derive(Debug)]
struct Links {
    /// Node id by real raft address, to know whom a datagram comes from.
    ids: HashMap<SocketAddr, u64>,
    /// Whether each node is isolated. Fixed key set: lock-free lookups.
    isolated: BTreeMap<u64, AtomicBool>,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    stop: AtomicBool,
}

impl Links {
    /// Whether a datagram between node `to` and the socket at `peer` may
    /// pass, counted as forwarded or dropped. A peer that is no node (say, a
    /// test's own socket) is never isolated.
    fn pass(&self, to: u64, peer: SocketAddr) -> bool {
        let cut = |id: &u64| self.isolated[id].load(Ordering::Relaxed);
        let passes = !cut(&to) && !self.ids.get(&peer).is_some_and(cut);
        let counter = if passes {
            &self.forwarded
        } else {
            &self.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        passes
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl Relay {
    /// Starts a relay for the nodes whose real raft addresses are `real`,
    /// binding one front socket per node on `127.0.0.1:0` (`[::1]:0` for a
    /// node with an IPv6 address).
    pub fn start(real: &BTreeMap<u64, SocketAddr>) -> Relay {
        let links = Arc::new(Links {
            ids: real.iter().map(|(&id, &addr)| (addr, id)).collect(),
            isolated: real
                .keys()
                .map(|&id| (id, AtomicBool::new(false)))
                .collect(),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        assert_eq!(
            links.ids.len(),
            real.len(),
            "two nodes share a raft address: {real:?}"
        );
        // Built first so that a panic below stops the threads already started.
        let mut relay = Relay {
            fronts: BTreeMap::new(),
            links,
            threads: Vec::with_capacity(real.len()),
        };
        for (&id, &target) in real {
            let socket = bind_beside(target)
                .unwrap_or_else(|e| panic!("relay: binding node {id}'s front socket: {e}"));
            let addr = socket.local_addr().expect("a bound socket has an address");
            let front = Front {
                id,
                target,
                socket: Arc::new(socket),
                links: relay.links.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("relay-front-{id}"))
                .spawn(move || front.run())
                .expect("spawning a relay thread");
            relay.fronts.insert(id, addr);
            relay.threads.push(thread);
        }
        relay
    }

    /// The address that stands for node `id`: peers dial this instead of
    /// its real raft address.
    pub fn front(&self, id: u64) -> SocketAddr {
        *self
            .fronts
            .get(&id)
            .unwrap_or_else(|| panic!("relay: node {id} is not relayed"))
    }

    /// Every node's front address, by id.
    pub fn fronts(&self) -> &BTreeMap<u64, SocketAddr> {
        &self.fronts
    }

    /// Drops every datagram to or from node `id` from now on, on new and
    /// existing NAT entries alike, until [`Relay::heal`].
    pub fn isolate(&self, id: u64) {
        self.flag(id).store(true, Ordering::Relaxed);
    }

    /// Lets node `id`'s datagrams through again.
    pub fn heal(&self, id: u64) {
        self.flag(id).store(false, Ordering::Relaxed);
    }

    /// Lets every node's datagrams through again.
    pub fn heal_all(&self) {
        for flag in self.links.isolated.values() {
            flag.store(false, Ordering::Relaxed);
        }
    }

    /// Whether node `id` is isolated.
    pub fn is_isolated(&self, id: u64) -> bool {
        self.flag(id).load(Ordering::Relaxed)
    }

    /// Datagrams passed on so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.links.forwarded.load(Ordering::Relaxed)
    }

    /// Datagrams dropped so far because a node was isolated.
    pub fn dropped(&self) -> u64 {
        self.links.dropped.load(Ordering::Relaxed)
    }

    fn flag(&self, id: u64) -> &AtomicBool {
        self.links
            .isolated
            .get(&id)
            .unwrap_or_else(|| panic!("relay: node {id} is not relayed"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.links.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            // A relay thread that panicked has already printed why.
            let _ = thread.join();
        }
    }
}

/// Node `id`'s front socket and the NAT entries behind it.
struct Front {
    id: u64,
    /// Node `id`'s real raft address.
    target: SocketAddr,
    socket: Arc<UdpSocket>,
    links: Arc<Links>,
}

impl Front {
    fn run(self) {
        let mut upstreams: HashMap<SocketAddr, Upstream> = HashMap::new();
        let mut buf = vec![0u8; DATAGRAM_MAX];
        while !self.links.stopping() {
            let Some((len, source)) = receive(&self.socket, &mut buf) else {
                continue;
            };
            if !self.links.pass(self.id, source) {
                continue;
            }
            let upstream = match upstreams.entry(source) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => match self.open_upstream(source) {
                    Ok(upstream) => entry.insert(upstream),
                    Err(e) => {
                        eprintln!(
                            "relay: node {}: no upstream socket for {source}: {e}",
                            self.id
                        );
                        continue;
                    }
                },
            };
            // Loss is what UDP promises; a failed send is just that.
            let _ = upstream.socket.send_to(&buf[..len], self.target);
        }
        for (_, upstream) in upstreams {
            let _ = upstream.thread.join();
        }
    }

    /// The NAT entry for datagrams from `source` to this node: a socket the
    /// node sees as `source`, and a thread carrying its answers back.
    fn open_upstream(&self, source: SocketAddr) -> io::Result<Upstream> {
        let socket = Arc::new(bind_beside(self.target)?);
        let back = Back {
            id: self.id,
            target: self.target,
            source,
            upstream: socket.clone(),
            front: self.socket.clone(),
            links: self.links.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("relay-{}-to-{source}", self.id))
            .spawn(move || back.run())?;
        Ok(Upstream { socket, thread })
    }
}

struct Upstream {
    socket: Arc<UdpSocket>,
    thread: JoinHandle<()>,
}

/// Carries node `id`'s answers on one upstream socket back to `source`.
struct Back {
    id: u64,
    target: SocketAddr,
    source: SocketAddr,
    upstream: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    links: Arc<Links>,
}

impl Back {
    fn run(self) {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        while !self.links.stopping() {
            let Some((len, from)) = receive(&self.upstream, &mut buf) else {
                continue;
            };
            // Only the node this entry leads to may answer through it.
            if from != self.target || !self.links.pass(self.id, self.source) {
                continue;
            }
            let _ = self.front.send_to(&buf[..len], self.source);
        }
    }
}

/// Binds a relay socket with [`POLL`] as its read timeout, on the loopback
/// address of `peer`'s family.
fn bind_beside(peer: SocketAddr) -> io::Result<UdpSocket> {
    let ip = match peer.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    let socket = UdpSocket::bind((ip, 0))?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// One datagram, or `None` when the read timed out (or failed: on an
/// unconnected socket that is at most a stale ICMP error, and the next read
/// is the judge).
fn receive(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match socket.recv_from(buf) {
        Ok(received) => Some(received),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(_) => {
            // Not a time-out: do not spin on an error that repeats.
            std::thread::sleep(POLL);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A plain socket playing node `id`, with a relay in front of all of them.
    struct Net {
        nodes: BTreeMap<u64, UdpSocket>,
        relay: Relay,
    }

    fn net(ids: &[u64]) -> Net {
        let nodes: BTreeMap<u64, UdpSocket> = ids
            .iter()
            .map(|&id| {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("binding a node socket");
                socket
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .expect("setting a read timeout");
                (id, socket)
            })
            .collect();
        let real = nodes
            .iter()
            .map(|(&id, s)| (id, s.local_addr().expect("bound")))
            .collect();
        let relay = Relay::start(&real);
        Net { nodes, relay }
    }

    impl Net {
        /// Node `from` sends `payload` to node `to`'s front address.
        fn send(&self, from: u64, to: u64, payload: &[u8]) {
            self.nodes[&from]
                .send_to(payload, self.relay.front(to))
                .expect("sending a datagram");
        }

        /// The next datagram node `id` receives within 200 ms, and its source.
        fn receive(&self, id: u64) -> Option<(Vec<u8>, SocketAddr)> {
            let mut buf = [0u8; 2048];
            let (len, from) = self.nodes[&id].recv_from(&mut buf).ok()?;
            Some((buf[..len].to_vec(), from))
        }

        /// Node `from` sends to `to`, which answers to whoever it saw; returns
        /// what `from` got back and from which address, if the round trip
        /// made it.
        fn round_trip(&self, from: u64, to: u64) -> Option<(Vec<u8>, SocketAddr)> {
            self.send(from, to, b"ping");
            let (payload, seen) = self.receive(to)?;
            assert_eq!(payload, b"ping");
            self.nodes[&to]
                .send_to(b"pong", seen)
                .expect("answering a datagram");
            self.receive(from)
        }
    }

    #[test]
    fn datagrams_flow_both_ways_through_a_stable_nat_entry() {
        let net = net(&[1, 2]);
        // Node 2 sees node 1 behind one upstream socket, never 1's real address.
        net.send(1, 2, b"first");
        let (payload, seen_as) = net.receive(2).expect("node 2 gets the datagram");
        assert_eq!(payload, b"first");
        assert_ne!(seen_as, net.nodes[&1].local_addr().unwrap());
        net.send(1, 2, b"second");
        assert_eq!(net.receive(2).map(|(_, s)| s), Some(seen_as));

        // Node 2's answer reaches node 1 from node 2's front address.
        net.nodes[&2].send_to(b"answer", seen_as).unwrap();
        let (payload, from) = net.receive(1).expect("node 1 gets the answer");
        assert_eq!(payload, b"answer");
        assert_eq!(from, net.relay.front(2));

        // The other direction uses its own entry.
        let (payload, from) = net.round_trip(2, 1).expect("2 → 1 → 2");
        assert_eq!(payload, b"pong");
        assert_eq!(from, net.relay.front(1));
        assert_eq!(net.relay.forwarded(), 5);
        assert_eq!(net.relay.dropped(), 0);
    }

    #[test]
    fn isolated_node_neither_sends_nor_receives_until_healed() {
        let net = net(&[1, 2, 3]);
        // NAT entries both ways exist before the cut.
        assert!(net.round_trip(1, 2).is_some());
        assert!(net.round_trip(2, 1).is_some());

        net.relay.isolate(1);
        assert!(net.relay.is_isolated(1));
        net.send(1, 2, b"out");
        assert_eq!(net.receive(2), None, "datagram from the isolated node");
        net.send(2, 1, b"in");
        assert_eq!(net.receive(1), None, "datagram to the isolated node");
        // The others still talk.
        assert!(net.round_trip(2, 3).is_some());
        assert!(net.round_trip(3, 2).is_some());
        assert_eq!(net.relay.dropped(), 2);

        net.relay.heal(1);
        assert!(!net.relay.is_isolated(1));
        assert_eq!(net.round_trip(1, 2).map(|(p, _)| p), Some(b"pong".to_vec()));
        assert_eq!(net.round_trip(2, 1).map(|(p, _)| p), Some(b"pong".to_vec()));
    }

    #[test]
    fn answers_on_an_existing_entry_are_dropped_while_either_end_is_isolated() {
        let net = net(&[1, 2]);
        net.send(1, 2, b"hello");
        let (_, seen_as) = net.receive(2).expect("node 2 gets the datagram");

        // Isolating the answering node…
        net.relay.isolate(2);
        net.nodes[&2].send_to(b"answer", seen_as).unwrap();
        assert_eq!(net.receive(1), None);
        net.relay.heal_all();
        // …or the asking one: either way node 1 hears nothing.
        net.relay.isolate(1);
        net.nodes[&2].send_to(b"answer", seen_as).unwrap();
        assert_eq!(net.receive(1), None);
        net.relay.heal_all();
        net.nodes[&2].send_to(b"answer", seen_as).unwrap();
        assert_eq!(net.receive(1).map(|(p, _)| p), Some(b"answer".to_vec()));
        assert_eq!(net.relay.dropped(), 2);
    }

    #[test]
    fn dropping_the_relay_stops_its_threads_promptly() {
        let net = net(&[1, 2, 3]);
        for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 2)] {
            assert!(net.round_trip(from, to).is_some());
        }
        let front = net.relay.front(1);
        let started = Instant::now();
        drop(net.relay);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "drop took {took:?}");
        // The front socket is closed: its port can be bound again.
        UdpSocket::bind(front).expect("the front port was released");
    }
}
