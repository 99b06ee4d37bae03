//! Reads the binlog stream ahead of conversion, on a task of its own.
//!
//! Reading a packet off the socket and parsing it into an event costs about as much CPU as converting the event into
//! canal Entries. On one task the two take turns; with the stream read on its own task, the dump and the conversion
//! run on both cores at once. Events that have already arrived are handed over in batches, so small events do not
//! cost a thread wake-up each. What is read ahead is bounded by bytes ([`READ_AHEAD_BYTES`]), so a burst of large
//! events cannot pile up in memory while the converter waits for room in the store.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use mysql_async::BinlogStream;
use mysql_async::binlog::events::Event;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Binlog bytes read ahead of the converter at most (one larger event is still let through, alone).
pub const READ_AHEAD_BYTES: u32 = 2 << 20;
/// Events handed over at once when the stream has them ready: one wake-up of the converter per batch rather than
/// per event, which is most of the cost of handing small events between threads.
const BATCH_EVENTS: usize = 256;

/// What the stream gave next.
pub enum Next {
    Event(Event),
    /// The stream failed; nothing more comes.
    Failed(mysql_async::Error),
    /// The server closed the stream.
    Ended,
    /// Neither an event nor a heartbeat arrived within the allowed silence.
    Silent(Duration),
}

/// Events read together, with the read-ahead room they hold until the converter has taken the last of them.
struct Batch {
    items: Vec<Next>,
    room: OwnedSemaphorePermit,
}

/// The stream, read by its own task.
pub struct ReadAhead {
    batches: mpsc::Receiver<Batch>,
    current: std::vec::IntoIter<Next>,
    /// The room of the batch being drained; released when the next batch is taken.
    _room: Option<OwnedSemaphorePermit>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ReadAhead {
    /// Starts reading `stream`; a gap of more than `silence` between events is reported as [`Next::Silent`].
    pub fn start(stream: BinlogStream, silence: Duration) -> Self {
        // The byte budget is the real bound; the channel's capacity only caps its bookkeeping.
        let (sender, batches) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let task = tokio::spawn(read(stream, silence, sender, stop.clone()));
        Self {
            batches,
            current: Vec::new().into_iter(),
            _room: None,
            stop,
            task,
        }
    }

    /// The next item; `Ended` once the reading task is gone.
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(item) = self.current.next() {
                return item;
            }
            let Some(batch) = self.batches.recv().await else {
                return Next::Ended;
            };
            self.current = batch.items.into_iter();
            self._room = Some(batch.room);
        }
    }

    /// Stops reading and closes the stream (its connection to the server).
    pub async fn close(self) {
        self.stop.cancel();
        drop(self.batches);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the binlog read-ahead task failed");
        }
    }
}

fn item(next: Option<Result<Event, mysql_async::Error>>) -> Next {
    match next {
        None => Next::Ended,
        Some(Err(e)) => Next::Failed(e),
        Some(Ok(event)) => Next::Event(event),
    }
}

async fn read(mut stream: BinlogStream, silence: Duration, sender: mpsc::Sender<Batch>, stop: CancellationToken) {
    let budget = Arc::new(Semaphore::new(READ_AHEAD_BYTES as usize));
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            next = tokio::time::timeout(silence, stream.next()) => next,
        };
        let mut items = vec![first.map_or(Next::Silent(silence), item)];
        let mut bytes = 0u32;
        // Take what else has already arrived, without waiting for more.
        while let Some(Next::Event(event)) = items.last() {
            bytes = bytes.saturating_add(event.header().event_size());
            if items.len() >= BATCH_EVENTS || bytes >= READ_AHEAD_BYTES / 4 {
                break;
            }
            match stream.next().now_or_never() {
                Some(next) => items.push(item(next)),
                None => break,
            }
        }
        let last = !matches!(items.last(), Some(Next::Event(_)));
        let room = tokio::select! {
            _ = stop.cancelled() => break,
            room = budget.clone().acquire_many_owned(bytes.clamp(1, READ_AHEAD_BYTES)) => room,
        };
        // The semaphore is never closed, so acquiring can only succeed.
        let Ok(room) = room else { break };
        if sender.send(Batch { items, room }).await.is_err() || last {
            break;
        }
    }
    let _ = stream.close().await;
}
