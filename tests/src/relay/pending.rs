//! Datagrams held back by a delay, each sent when its time comes by the
//! relay thread that received it (no thread of its own).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One relay thread's delayed datagrams, earliest first.
#[derive(Default)]
pub(super) struct Pending {
    heap: BinaryHeap<Reverse<Held>>,
    /// Breaks ties between datagrams due at the same instant: first in, first out.
    seq: u64,
}

struct Held {
    due: Instant,
    seq: u64,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl Pending {
    /// Sends `bytes` to `to` on `socket` after `delay` (at once if zero).
    pub(super) fn send(
        &mut self,
        delay: Duration,
        socket: &Arc<UdpSocket>,
        to: SocketAddr,
        bytes: &[u8],
    ) {
        if delay.is_zero() {
            // Loss is what UDP promises; a failed send is just that.
            let _ = socket.send_to(bytes, to);
            return;
        }
        self.seq += 1;
        self.heap.push(Reverse(Held {
            due: Instant::now() + delay,
            seq: self.seq,
            socket: socket.clone(),
            to,
            bytes: bytes.to_vec(),
        }));
        self.flush();
    }

    /// Sends every datagram whose time has come.
    pub(super) fn flush(&mut self) {
        let now = Instant::now();
        while self.heap.peek().is_some_and(|Reverse(h)| h.due <= now) {
            let Reverse(held) = self.heap.pop().expect("peeked");
            let _ = held.socket.send_to(&held.bytes, held.to);
        }
    }

    /// How long the thread may block in a read before the next datagram is
    /// due: at most `poll`, at least a millisecond.
    pub(super) fn wait(&self, poll: Duration) -> Duration {
        match self.heap.peek() {
            None => poll,
            Some(Reverse(h)) => h
                .due
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), poll),
        }
    }
}
