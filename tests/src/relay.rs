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
//! [`Relay::partition`] cuts the links between groups of nodes (a node may
//! stand in two groups: a bridge). Nothing is queued while a link is cut:
//! QUIC sees plain loss. [`Relay::impair`] adds delay, jitter and loss to
//! one node's link, as `tc netem` would on its interface.
//!
//! Every socket is served by its own thread, polling with a short read
//! timeout; dropping the [`Relay`] stops and joins them all within about
//! [`POLL`]. Delayed datagrams wait in the thread that received them.
//!
//! # Layout
//! * [`impairment`]: [`Impairment`], delay, jitter and loss of one link.
//! * `pending`: the datagrams a thread holds back until they are due.
//!
//! [`Cluster`]: crate::Cluster

pub mod impairment;
mod pending;

pub use impairment::Impairment;

use impairment::SharedImpairment;
use pending::Pending;
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
    /// Whether the link between two nodes (`(low id, high id)`) is cut.
    cut: BTreeMap<(u64, u64), AtomicBool>,
    /// Delay and loss on each node's link.
    impaired: BTreeMap<u64, SharedImpairment>,
    forwarded: AtomicU64,
    /// Payload bytes of the datagrams counted in `forwarded`.
    forwarded_bytes: AtomicU64,
    dropped: AtomicU64,
    /// Datagrams lost to an [`Impairment`] (not counted as dropped).
    lost: AtomicU64,
    stop: AtomicBool,
}

impl Links {
    /// The fate of a datagram of `len` bytes between node `to` and the
    /// socket at `peer`:
    /// `None` if it may not pass (counted as dropped, or as lost to an
    /// impairment), else how long to hold it (counted as forwarded). A peer
    /// that is no node (say, a test's own socket) is never cut off.
    fn pass(&self, to: u64, peer: SocketAddr, len: usize) -> Option<Duration> {
        let isolated = |id: &u64| self.isolated[id].load(Ordering::Relaxed);
        let from = self.ids.get(&peer).copied();
        let passes = !isolated(&to)
            && !from.as_ref().is_some_and(isolated)
            && !from.is_some_and(|from| self.is_cut(from, to));
        if !passes {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let links: Vec<Impairment> = [Some(to), from]
            .into_iter()
            .flatten()
            .map(|id| self.impaired[&id].get())
            .collect();
        match impairment::fate(&links, &mut rand::thread_rng()) {
            Some(delay) => {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
                self.forwarded_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
                Some(delay)
            }
            None => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn link(&self, a: u64, b: u64) -> Option<&AtomicBool> {
        self.cut.get(&(a.min(b), a.max(b)))
    }

    fn is_cut(&self, a: u64, b: u64) -> bool {
        self.link(a, b).is_some_and(|c| c.load(Ordering::Relaxed))
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
            cut: real
                .keys()
                .flat_map(|&a| real.keys().filter(move |&&b| a < b).map(move |&b| (a, b)))
                .map(|pair| (pair, AtomicBool::new(false)))
                .collect(),
            impaired: real
                .keys()
                .map(|&id| (id, SharedImpairment::default()))
                .collect(),
            forwarded: AtomicU64::new(0),
            forwarded_bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
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

    /// Lets every node's datagrams through again, on every link, and takes
    /// every [`Impairment`] off: the network is whole.
    pub fn heal_all(&self) {
        for flag in self.links.isolated.values().chain(self.links.cut.values()) {
            flag.store(false, Ordering::Relaxed);
        }
        for link in self.links.impaired.values() {
            link.set(Impairment::default());
        }
    }

    /// Cuts every link between two nodes that no group of `groups` holds
    /// both of, until [`Relay::heal_all`]. A node in two groups is a
    /// bridge: `[[1, 2, 3], [3, 4, 5]]` lets 3 talk to everyone while 1
    /// and 2 no longer reach 4 and 5. A node in no group is cut off from
    /// every other (but not isolated from test sockets).
    pub fn partition(&self, groups: &[&[u64]]) {
        for group in groups {
            for id in *group {
                self.flag(*id);
            }
        }
        for (&(a, b), flag) in &self.links.cut {
            let together = groups.iter().any(|g| g.contains(&a) && g.contains(&b));
            flag.store(!together, Ordering::Relaxed);
        }
    }

    /// Whether the link between nodes `a` and `b` is cut (by
    /// [`Relay::partition`]; isolation is separate).
    pub fn is_cut(&self, a: u64, b: u64) -> bool {
        self.flag(a);
        self.flag(b);
        self.links.is_cut(a, b)
    }

    /// Puts `impairment` on node `id`'s link, both directions, from now on
    /// (replacing what was there): a datagram between two impaired nodes
    /// suffers both.
    pub fn impair(&self, id: u64, impairment: Impairment) {
        self.flag(id);
        self.links.impaired[&id].set(impairment);
    }

    /// Whether node `id` is isolated.
    pub fn is_isolated(&self, id: u64) -> bool {
        self.flag(id).load(Ordering::Relaxed)
    }

    /// Datagrams passed on so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.links.forwarded.load(Ordering::Relaxed)
    }

    /// UDP payload bytes of the datagrams passed on so far: the nodes'
    /// Raft traffic (QUIC packets), both directions.
    pub fn forwarded_bytes(&self) -> u64 {
        self.links.forwarded_bytes.load(Ordering::Relaxed)
    }

    /// Datagrams dropped so far because a node was isolated or a link cut.
    pub fn dropped(&self) -> u64 {
        self.links.dropped.load(Ordering::Relaxed)
    }

    /// Datagrams lost so far to an [`Impairment`].
    pub fn lost(&self) -> u64 {
        self.links.lost.load(Ordering::Relaxed)
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
        let mut pending = Pending::default();
        while !self.links.stopping() {
            pending.flush();
            let Some((len, source)) = receive(&self.socket, &mut buf, pending.wait(POLL)) else {
                continue;
            };
            let Some(delay) = self.links.pass(self.id, source, len) else {
                continue;
            };
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
            pending.send(delay, &upstream.socket, self.target, &buf[..len]);
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
        let mut pending = Pending::default();
        while !self.links.stopping() {
            pending.flush();
            let Some((len, from)) = receive(&self.upstream, &mut buf, pending.wait(POLL)) else {
                continue;
            };
            // Only the node this entry leads to may answer through it.
            if from != self.target {
                continue;
            }
            let Some(delay) = self.links.pass(self.id, self.source, len) else {
                continue;
            };
            pending.send(delay, &self.front, self.source, &buf[..len]);
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

/// One datagram within `wait`, or `None` when the read timed out (or
/// failed: on an unconnected socket that is at most a stale ICMP error, and
/// the next read is the judge).
fn receive(socket: &UdpSocket, buf: &mut [u8], wait: Duration) -> Option<(usize, SocketAddr)> {
    if wait != POLL {
        // Only while datagrams are held; the socket's own timeout is POLL.
        let _ = socket.set_read_timeout(Some(wait));
    }
    let received = socket.recv_from(buf);
    if wait != POLL {
        let _ = socket.set_read_timeout(Some(POLL));
    }
    match received {
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
mod tests;
