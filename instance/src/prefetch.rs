//! Reads the binlog stream ahead of conversion, on a task of its own.
//!
//! Reading a packet off the socket and parsing it into an event costs about as much CPU as converting the event into
//! canal Entries. On one task the two take turns; with the stream read on its own task, the dump and the conversion
//! run on both cores at once. What is read ahead is bounded by bytes ([`READ_AHEAD_BYTES`]), so a burst of large
//! events cannot pile up in memory while the converter waits for room in the store.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mysql_async::BinlogStream;
use mysql_async::binlog::events::Event;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Binlog bytes read ahead of the converter at most (one larger event is still let through, alone).
pub const READ_AHEAD_BYTES: u32 = 4 << 20;

/// What the stream gave next.
pub enum Next {
    /// An event, with the read-ahead room it takes until it is dropped.
    Event(Event, ReadAhead),
    /// The stream failed; nothing more comes.
    Failed(mysql_async::Error),
    /// The server closed the stream.
    Ended,
    /// Neither an event nor a heartbeat arrived within the allowed silence.
    Silent(Duration),
}

/// Read-ahead room held by an event; released when dropped.
pub struct ReadAhead {
    _room: OwnedSemaphorePermit,
}

/// The stream, read by its own task.
pub struct Prefetch {
    events: mpsc::Receiver<Next>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Prefetch {
    /// Starts reading `stream`; a gap of more than `silence` between events is reported as [`Next::Silent`].
    pub fn start(stream: BinlogStream, silence: Duration) -> Self {
        // Events are few and large or many and small; the byte budget is the real bound, the count only caps the
        // queue's own bookkeeping.
        let (sender, events) = mpsc::channel(4096);
        let stop = CancellationToken::new();
        let task = tokio::spawn(read(stream, silence, sender, stop.clone()));
        Self { events, stop, task }
    }

    /// The next item; `Ended` once the reading task is gone.
    pub async fn next(&mut self) -> Next {
        self.events.recv().await.unwrap_or(Next::Ended)
    }

    /// Stops reading and closes the stream (its connection to the server).
    pub async fn close(self) {
        self.stop.cancel();
        drop(self.events);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the binlog read-ahead task failed");
        }
    }
}

async fn read(mut stream: BinlogStream, silence: Duration, sender: mpsc::Sender<Next>, stop: CancellationToken) {
    let budget = Arc::new(Semaphore::new(READ_AHEAD_BYTES as usize));
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = tokio::time::timeout(silence, stream.next()) => next,
        };
        let item = match next {
            Err(_) => Next::Silent(silence),
            Ok(None) => Next::Ended,
            Ok(Some(Err(e))) => Next::Failed(e),
            Ok(Some(Ok(event))) => {
                let size = event.header().event_size().clamp(1, READ_AHEAD_BYTES);
                let room = tokio::select! {
                    _ = stop.cancelled() => break,
                    room = budget.clone().acquire_many_owned(size) => room,
                };
                // The semaphore is never closed, so acquiring can only succeed.
                let Ok(room) = room else { break };
                Next::Event(event, ReadAhead { _room: room })
            }
        };
        let last = !matches!(item, Next::Event(..));
        if sender.send(item).await.is_err() || last {
            break;
        }
    }
    let _ = stream.close().await;
}
