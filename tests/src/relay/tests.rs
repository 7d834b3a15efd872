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
    // first, second, answer, ping, pong
    assert_eq!(net.relay.forwarded_bytes(), 5 + 6 + 6 + 4 + 4);
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
fn a_bridge_partition_cuts_only_the_links_between_the_sides() {
    let net = net(&[1, 2, 3, 4, 5]);
    net.relay.partition(&[&[1, 2, 3], &[3, 4, 5]]);
    assert!(net.relay.is_cut(1, 4) && net.relay.is_cut(5, 2));
    assert!(!net.relay.is_cut(1, 2) && !net.relay.is_cut(3, 5));
    for (from, to) in [(1, 2), (2, 3), (3, 1), (3, 4), (5, 3), (4, 5)] {
        assert!(net.round_trip(from, to).is_some(), "{from} → {to}");
    }
    for (from, to) in [(1, 4), (5, 2), (2, 4)] {
        net.send(from, to, b"across");
        assert_eq!(net.receive(to), None, "{from} → {to} crossed the cut");
    }
    net.relay.heal_all();
    assert!(net.round_trip(1, 4).is_some());
}

#[test]
fn an_impaired_link_delays_and_loses_datagrams_until_healed() {
    let net = net(&[1, 2]);
    net.relay.impair(
        1,
        Impairment {
            delay: Duration::from_millis(80),
            ..Impairment::default()
        },
    );
    let started = Instant::now();
    let (payload, _) = net.round_trip(2, 1).expect("a delayed round trip");
    assert_eq!(payload, b"pong");
    // Both legs cross node 1's link.
    assert!(
        started.elapsed() >= Duration::from_millis(160),
        "{:?}",
        started.elapsed()
    );

    net.relay.impair(
        2,
        Impairment {
            loss: 1.0,
            ..Impairment::default()
        },
    );
    net.send(1, 2, b"lost");
    assert_eq!(net.receive(2), None);
    assert!(net.relay.lost() >= 1);
    net.relay.heal_all();
    let started = Instant::now();
    assert!(net.round_trip(1, 2).is_some());
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
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
