//! The workers' bounded queue. Up to [`PREALLOCATED`] events it is crossbeam's array channel,
//! whose slots are allocated up front; a larger queue is an unbounded (block-allocated) channel
//! behind a counting gate, so it takes memory only for the events actually in it: a queue of
//! 100,000,000 costs nothing until it fills.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::clock::now_ns;

/// Capacities up to this are preallocated (crossbeam's array channel: the fastest).
pub(crate) const PREALLOCATED: usize = 1 << 16;

/// The largest capacity a queue may have.
pub(crate) const MAX_CAPACITY: usize = 1 << 24;

/// Free places in a large queue: producers take one per event, workers give it back.
struct Gate {
    free: Mutex<usize>,
    space: Condvar,
}

impl Gate {
    /// Takes a place, waiting while the queue is full.
    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self.space.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
    }

    /// Takes a place if there is one now.
    fn try_acquire(&self) -> bool {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if *free == 0 {
            return false;
        }
        *free -= 1;
        true
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.space.notify_one();
    }
}

/// The producers' end.
pub(crate) struct QueueSender<T> {
    sender: Sender<T>,
    gate: Option<Arc<Gate>>,
}

/// The workers' end (and the depth sampler's).
pub(crate) struct QueueReceiver<T> {
    receiver: Receiver<T>,
    gate: Option<Arc<Gate>>,
}

impl<T> Clone for QueueReceiver<T> {
    fn clone(&self) -> Self {
        QueueReceiver { receiver: self.receiver.clone(), gate: self.gate.clone() }
    }
}

/// A queue of at most `capacity` events (`1..=MAX_CAPACITY`, checked by the caller).
pub(crate) fn bounded<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    if capacity <= PREALLOCATED {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        return (QueueSender { sender, gate: None }, QueueReceiver { receiver, gate: None });
    }
    let (sender, receiver) = crossbeam_channel::unbounded();
    let gate = Arc::new(Gate { free: Mutex::new(capacity), space: Condvar::new() });
    (
        QueueSender { sender, gate: Some(Arc::clone(&gate)) },
        QueueReceiver { receiver, gate: Some(gate) },
    )
}

impl<T> QueueSender<T> {
    /// Queues `item`, waiting while the queue is full; hands it back if every receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        if let Some(gate) = &self.gate {
            gate.acquire();
        }
        self.sender.send(item).map_err(|error| {
            if let Some(gate) = &self.gate {
                gate.release();
            }
            error.into_inner()
        })
    }

    /// Queues `item` if there is room now.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if let Some(gate) = &self.gate {
            if !gate.try_acquire() {
                return Err(TrySendError::Full(item));
            }
        }
        self.sender.try_send(item).inspect_err(|_| {
            if let Some(gate) = &self.gate {
                gate.release();
            }
        })
    }

    /// Events in the queue now.
    pub(crate) fn len(&self) -> usize {
        self.sender.len()
    }
}

impl<T> QueueReceiver<T> {
    /// Events in the queue now.
    pub(crate) fn len(&self) -> usize {
        self.receiver.len()
    }

    /// The next event, with the nanoseconds the caller waited for it on an empty queue (0
    /// when one was already waiting: taking it is hand-off, not idleness); `None` once every
    /// sender is gone and the queue is empty.
    pub(crate) fn next(&self) -> Option<(T, u64)> {
        let next = match self.receiver.try_recv() {
            Ok(item) => (item, 0),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                let from = now_ns();
                let item = self.receiver.recv().ok()?;
                (item, now_ns().saturating_sub(from))
            }
        };
        if let Some(gate) = &self.gate {
            gate.release();
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_queue_holds_its_capacity_and_no_more_without_allocating_it_up_front() {
        let capacity = PREALLOCATED + 10;
        let (sender, receiver) = bounded::<u64>(capacity);
        for i in 0..capacity as u64 {
            sender.try_send(i).expect("room");
        }
        assert!(matches!(sender.try_send(0), Err(TrySendError::Full(0))), "full at capacity");
        assert_eq!(receiver.next().map(|(e, _)| e), Some(0));
        sender.try_send(1).expect("one place came back");
        assert_eq!(sender.len(), capacity);
    }

    #[test]
    fn a_huge_queue_costs_nothing_until_it_fills() {
        // 16M places of 1 KiB would be 16 GiB if allocated up front.
        let (sender, receiver) = bounded::<[u8; 1024]>(MAX_CAPACITY);
        sender.send([1; 1024]).unwrap();
        assert_eq!(receiver.next().map(|(e, _)| e[0]), Some(1));
    }
}
