//! The bounded event store between the binlog reader and the clients, with canal's batch semantics.
//!
//! Entries live in one queue shared by every client of the destination, as in canal's MemoryEventStoreWithBuffer:
//! a get hands out the next entries as a numbered batch, an ack of the oldest batch frees its entries, and a
//! rollback makes every unacknowledged entry fetchable again. When the store holds `bufferSize` entries (or, in
//! MEMSIZE mode, `bufferSize × memUnit` bytes) the reader waits in [`Store::put`]: that is the backpressure that
//! keeps memory bounded however large a transaction is. canal counts an entry's binlog event size there; canal-rs
//! counts the larger of that and the encoded Entry, because narrow rows encode to several times their binlog size
//! and the limit is meant to bound memory. Batch sizes (a GET's fetch size in memory units) count binlog event sizes,
//! as in canal.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use canal_api::{BatchMode, StoreConfig};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::binlog::position::{BinlogPosition, ResumePoint};
use crate::convert::{Converted, EntryKind};

/// How long a get may wait for a full batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Return at once with whatever is there (canal's tryGet, timeout -1).
    No,
    /// Wait until the batch is full (canal's get with timeout 0).
    Forever,
    /// Wait until the batch is full or the time is up, then return whatever is there.
    Up(Duration),
}

/// A batch handed to a client. `id` is -1 when there was nothing to hand out.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub id: i64,
    pub entries: Vec<Bytes>,
    pub rows: usize,
}

/// What an acknowledged batch means for the client's cursor.
#[derive(Clone, Debug, PartialEq)]
pub struct Acked {
    /// Where to restart so that the entry after the batch comes first.
    pub resume: ResumePoint,
    /// The last transaction end or statement in the batch: canal's cursor position, if the batch had one.
    pub boundary: Option<Boundary>,
    pub rows: usize,
}

/// A transaction boundary as canal reports it in cursors.
#[derive(Clone, Debug, PartialEq)]
pub struct Boundary {
    pub position: BinlogPosition,
    pub execute_time: i64,
    pub server_id: u32,
    /// The GTID position after the boundary, when the source has one (MariaDB).
    pub gtid: Option<String>,
}

/// A refused ack or rollback, worded as canal words it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("ack error , clientId:{client_id} batchId:{batch_id} is not exist , please check")]
    UnknownAck { client_id: String, batch_id: i64 },
    #[error("rollback error, clientId:{client_id} batchId:{batch_id} is not exist , please check")]
    UnknownRollback { client_id: String, batch_id: i64 },
    #[error("batchId:{batch_id} is not the firstly:{first}")]
    NotFirst { batch_id: i64, first: i64 },
    #[error("store closed: the instance is shutting down")]
    Closed,
}

/// Numbers for progress logs and metrics. Totals count from the start of the store's term.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: usize,
    /// What the entries count against the MEMSIZE limit: each the larger of its binlog event and its encoding.
    pub bytes: u64,
    pub outstanding_batches: usize,
    /// Entries put, and entries acknowledged: canal's produce and consume sequences.
    pub put_total: u64,
    pub acked_total: u64,
    /// Binlog bytes of the entries put and acknowledged (canal's produce and consume memory).
    pub put_bytes: u64,
    pub acked_bytes: u64,
    /// Row changes put, handed out in batches (again after a rollback) and acknowledged.
    pub put_rows: u64,
    pub got_rows: u64,
    pub acked_rows: u64,
    /// Transaction ends put.
    pub transactions: u64,
    /// Event times (ms since the epoch) of the newest entry put, handed out and acknowledged; 0 until there is one.
    pub put_time_ms: i64,
    pub got_time_ms: i64,
    pub acked_time_ms: i64,
    /// Event time of the oldest entry in the store (not yet acknowledged); 0 when it is empty.
    pub oldest_time_ms: i64,
    /// How long puts waited for room.
    pub blocked: Duration,
    /// The limits: entries, and binlog bytes (MEMSIZE only; 0 in ITEMSIZE mode).
    pub max_entries: usize,
    pub max_bytes: u64,
}

/// Running totals of a store, kept under its lock.
#[derive(Default)]
struct Totals {
    put_bytes: u64,
    acked_bytes: u64,
    put_rows: u64,
    got_rows: u64,
    acked_rows: u64,
    transactions: u64,
    put_time_ms: i64,
    got_time_ms: i64,
    acked_time_ms: i64,
    blocked: Duration,
}

struct Outstanding {
    client_id: String,
    /// Sequence numbers `start..end` of the batch's entries.
    start: u64,
    end: u64,
}

struct Inner {
    entries: VecDeque<Converted>,
    /// Sequence number of `entries[0]`; everything before it is acknowledged.
    first_seq: u64,
    /// Sequence number of the next entry to hand out.
    get_seq: u64,
    /// The entries' [`footprint`]s.
    bytes: u64,
    /// Binlog event bytes of the entries not handed out yet: what a MEMSIZE batch is measured in.
    available_event_bytes: u64,
    /// Thresholds (in [`Store::available_units`]) that waiting gets need, with how many wait for each: a put wakes
    /// them only once the smallest is reached, not for every entry.
    waiting: BTreeMap<u64, usize>,
    batches: BTreeMap<i64, Outstanding>,
    next_batch: i64,
    /// Resume point just before `entries[0]`: after the last acknowledged entry, or where the dump started.
    /// `None` until the start position is known.
    acked_resume: Option<ResumePoint>,
    /// Resume point after the last entry put; `None` until the start position is known.
    tail_resume: Option<ResumePoint>,
    closed: bool,
    totals: Totals,
}

/// A get waiting for its batch to fill, registered so that puts know when to wake it. Leaves on drop, so a get
/// cancelled while waiting (its connection closed) does not keep a threshold behind.
struct Waiter<'a> {
    store: &'a Store,
    wanted: u64,
}

impl Waiter<'_> {
    fn leave(self, inner: &mut Inner) {
        remove_waiter(inner, self.wanted);
        std::mem::forget(self);
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        remove_waiter(&mut self.store.lock(), self.wanted);
    }
}

fn remove_waiter(inner: &mut Inner, wanted: u64) {
    if let Some(count) = inner.waiting.get_mut(&wanted) {
        *count -= 1;
        if *count == 0 {
            inner.waiting.remove(&wanted);
        }
    }
}

/// What an entry counts against the store's MEMSIZE limit.
fn footprint(entry: &Converted) -> u64 {
    entry.event_length.max(entry.bytes.len() as u64)
}

/// The store of one destination.
pub struct Store {
    inner: Mutex<Inner>,
    /// Woken when entries arrive or the store closes.
    readable: Notify,
    /// Woken when entries are freed or the store closes.
    writable: Notify,
    mode: BatchMode,
    mem_unit: u64,
    max_entries: usize,
    max_bytes: u64,
}

impl Store {
    /// An empty store. Until [`Store::start_at`] is called it hands out nothing and has no resume points.
    pub fn new(config: &StoreConfig) -> Self {
        let mem_unit = config.mem_unit.max(1) as u64;
        Self {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                first_seq: 0,
                get_seq: 0,
                bytes: 0,
                available_event_bytes: 0,
                waiting: BTreeMap::new(),
                batches: BTreeMap::new(),
                next_batch: 1,
                acked_resume: None,
                tail_resume: None,
                closed: false,
                totals: Totals::default(),
            }),
            readable: Notify::new(),
            writable: Notify::new(),
            mode: config.batch_mode,
            mem_unit,
            max_entries: config.buffer_size.max(1) as usize,
            max_bytes: config.buffer_size.max(1) as u64 * mem_unit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the queue half-updated (every update is a few field writes),
        // so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn has_room(&self, inner: &Inner) -> bool {
        if inner.entries.is_empty() {
            return true;
        }
        inner.entries.len() < self.max_entries && (self.mode == BatchMode::Itemsize || inner.bytes < self.max_bytes)
    }

    /// Adds an entry, waiting while the store is full. Fails only when the store is closed.
    pub async fn put(&self, entry: Converted) -> Result<(), StoreError> {
        let mut waiting_since: Option<Instant> = None;
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if inner.closed {
                    return Err(StoreError::Closed);
                }
                if self.has_room(&inner) {
                    let totals = &mut inner.totals;
                    if let Some(since) = waiting_since {
                        totals.blocked += since.elapsed();
                    }
                    totals.put_bytes += entry.event_length;
                    totals.put_rows += entry.rows as u64;
                    totals.transactions += u64::from(entry.kind == EntryKind::End);
                    totals.put_time_ms = entry.execute_time;
                    inner.bytes += footprint(&entry);
                    inner.available_event_bytes += entry.event_length;
                    inner.tail_resume = Some(entry.resume_after.clone());
                    inner.entries.push_back(entry);
                    let wake = inner
                        .waiting
                        .first_key_value()
                        .is_some_and(|(&wanted, _)| self.available_units(&inner) >= wanted);
                    drop(inner);
                    if wake {
                        self.readable.notify_waiters();
                    }
                    return Ok(());
                }
            }
            if waiting_since.is_none() {
                waiting_since = Some(Instant::now());
                // Gets waiting for a larger batch than the store can hold take what there is.
                self.readable.notify_waiters();
            }
            notified.await;
        }
    }

    /// Whether a put would wait right now.
    pub fn is_full(&self) -> bool {
        !self.has_room(&self.lock())
    }

    /// Hands out the next batch. `fetch_size` counts entries (ITEMSIZE) or memory units (MEMSIZE).
    pub async fn get(&self, client_id: &str, fetch_size: i32, wait: Wait) -> Result<Batch, StoreError> {
        let fetch_size = if fetch_size <= 0 { 1000 } else { fetch_size as u64 };
        let deadline = match wait {
            Wait::Up(d) => Some(Instant::now() + d),
            _ => None,
        };
        let wanted = match self.mode {
            BatchMode::Itemsize => fetch_size,
            BatchMode::Memsize => fetch_size * self.mem_unit,
        };
        let mut waiter: Option<Waiter<'_>> = None;
        loop {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if inner.closed {
                    return Err(StoreError::Closed);
                }
                let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
                // A full store cannot grow into the batch: hand out what is there rather than wait for both sides.
                let available = self.available_units(&inner);
                let full = available >= wanted || (available > 0 && !self.has_room(&inner));
                if wait == Wait::No || timed_out || full {
                    if let Some(waiter) = waiter.take() {
                        waiter.leave(&mut inner);
                    }
                    return Ok(self.take_batch(&mut inner, client_id, fetch_size));
                }
                if waiter.is_none() {
                    *inner.waiting.entry(wanted).or_default() += 1;
                    waiter = Some(Waiter { store: self, wanted });
                }
            }
            match deadline {
                Some(d) => {
                    let _ = tokio::time::timeout_at(d, notified).await;
                }
                None => notified.await,
            }
        }
    }

    fn available<'a>(&self, inner: &'a Inner) -> impl Iterator<Item = &'a Converted> + 'a {
        let skip = (inner.get_seq - inner.first_seq) as usize;
        inner.entries.range(skip.min(inner.entries.len())..)
    }

    /// What is not handed out yet, in the unit of fetch sizes: entries (ITEMSIZE) or binlog bytes (MEMSIZE).
    fn available_units(&self, inner: &Inner) -> u64 {
        match self.mode {
            BatchMode::Itemsize => inner.entries.len() as u64 - (inner.get_seq - inner.first_seq),
            BatchMode::Memsize => inner.available_event_bytes,
        }
    }

    fn take_batch(&self, inner: &mut Inner, client_id: &str, fetch_size: u64) -> Batch {
        let mut entries = Vec::new();
        let mut rows = 0;
        let mut bytes = 0u64;
        let mut last_time = 0;
        for e in self.available(inner) {
            let full = match self.mode {
                BatchMode::Itemsize => entries.len() as u64 >= fetch_size,
                // canal keeps adding while the total is within the limit, so a batch always has at least one
                // entry and may overshoot by its last one.
                BatchMode::Memsize => !entries.is_empty() && bytes > fetch_size * self.mem_unit,
            };
            if full {
                break;
            }
            bytes += e.event_length;
            rows += e.rows;
            last_time = e.execute_time;
            entries.push(e.bytes.clone());
        }
        if entries.is_empty() {
            return Batch {
                id: -1,
                entries,
                rows: 0,
            };
        }
        inner.totals.got_rows += rows as u64;
        inner.totals.got_time_ms = last_time;
        inner.available_event_bytes -= bytes;
        let id = inner.next_batch;
        inner.next_batch += 1;
        let start = inner.get_seq;
        inner.get_seq += entries.len() as u64;
        inner.batches.insert(
            id,
            Outstanding {
                client_id: client_id.to_string(),
                start,
                end: inner.get_seq,
            },
        );
        Batch { id, entries, rows }
    }

    /// Acknowledges the oldest outstanding batch and frees its entries.
    pub fn ack(&self, client_id: &str, batch_id: i64) -> Result<Acked, StoreError> {
        let mut inner = self.lock();
        let first = *inner.batches.keys().next().ok_or_else(|| StoreError::UnknownAck {
            client_id: client_id.into(),
            batch_id,
        })?;
        if !inner.batches.contains_key(&batch_id) {
            return Err(StoreError::UnknownAck {
                client_id: client_id.into(),
                batch_id,
            });
        }
        if batch_id != first {
            return Err(StoreError::NotFirst { batch_id, first });
        }
        let Some(batch) = inner.batches.remove(&batch_id) else {
            return Err(StoreError::UnknownAck {
                client_id: client_id.into(),
                batch_id,
            });
        };
        let mut resume = None;
        let mut boundary = None;
        let mut rows = 0;
        while inner.first_seq < batch.end {
            let Some(entry) = inner.entries.pop_front() else { break };
            if inner.first_seq >= inner.get_seq {
                inner.available_event_bytes -= entry.event_length;
            }
            inner.first_seq += 1;
            inner.bytes -= footprint(&entry);
            inner.totals.acked_bytes += entry.event_length;
            inner.totals.acked_time_ms = entry.execute_time;
            rows += entry.rows;
            if matches!(entry.kind, EntryKind::End | EntryKind::Statement) {
                boundary = Some(Boundary {
                    position: entry.position.clone(),
                    execute_time: entry.execute_time,
                    server_id: entry.server_id,
                    gtid: entry.gtid.clone(),
                });
            }
            resume = Some(entry.resume_after);
        }
        // A rollback may have moved the get sequence behind the freed entries.
        inner.get_seq = inner.get_seq.max(inner.first_seq);
        // Every batch holds at least one entry, so `resume` is set; the fallback only guards that invariant.
        let Some(resume) = resume.or_else(|| inner.acked_resume.clone()) else {
            return Err(StoreError::UnknownAck {
                client_id: client_id.into(),
                batch_id,
            });
        };
        inner.acked_resume = Some(resume.clone());
        inner.totals.acked_rows += rows as u64;
        let acked = Acked { resume, boundary, rows };
        tracing::trace!(
            client_id = batch.client_id,
            batch_id,
            start = batch.start,
            "batch acknowledged"
        );
        drop(inner);
        self.writable.notify_one();
        Ok(acked)
    }

    /// Rolls back one batch (the oldest) or, for id 0, all of them; unacknowledged entries are handed out again.
    pub fn rollback(&self, client_id: &str, batch_id: i64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if batch_id == 0 {
            inner.batches.clear();
        } else {
            let first = *inner.batches.keys().next().ok_or_else(|| StoreError::UnknownRollback {
                client_id: client_id.into(),
                batch_id,
            })?;
            if !inner.batches.contains_key(&batch_id) {
                return Err(StoreError::UnknownRollback {
                    client_id: client_id.into(),
                    batch_id,
                });
            }
            if batch_id != first {
                return Err(StoreError::NotFirst { batch_id, first });
            }
            inner.batches.remove(&batch_id);
        }
        inner.get_seq = inner.first_seq;
        inner.available_event_bytes = inner.entries.iter().map(|e| e.event_length).sum();
        drop(inner);
        self.readable.notify_waiters();
        Ok(())
    }

    /// Sets where the dump starts, once it is known. Entries may be put only after this.
    pub fn start_at(&self, start: ResumePoint) {
        let mut inner = self.lock();
        inner.acked_resume = Some(start.clone());
        inner.tail_resume = Some(start);
    }

    /// Resume point before the oldest unacknowledged entry (a new client's cursor); `None` before the start is known.
    pub fn acked_resume(&self) -> Option<ResumePoint> {
        self.lock().acked_resume.clone()
    }

    /// Resume point after the newest entry (where a reconnecting dump continues); `None` before the start is known.
    pub fn tail_resume(&self) -> Option<ResumePoint> {
        self.lock().tail_resume.clone()
    }

    pub fn stats(&self) -> StoreStats {
        let inner = self.lock();
        StoreStats {
            entries: inner.entries.len(),
            bytes: inner.bytes,
            outstanding_batches: inner.batches.len(),
            put_total: inner.first_seq + inner.entries.len() as u64,
            acked_total: inner.first_seq,
            put_bytes: inner.totals.put_bytes,
            acked_bytes: inner.totals.acked_bytes,
            put_rows: inner.totals.put_rows,
            got_rows: inner.totals.got_rows,
            acked_rows: inner.totals.acked_rows,
            transactions: inner.totals.transactions,
            put_time_ms: inner.totals.put_time_ms,
            got_time_ms: inner.totals.got_time_ms,
            acked_time_ms: inner.totals.acked_time_ms,
            oldest_time_ms: inner.entries.front().map_or(0, |e| e.execute_time),
            blocked: inner.totals.blocked,
            max_entries: self.max_entries,
            max_bytes: if self.mode == BatchMode::Memsize {
                self.max_bytes
            } else {
                0
            },
        }
    }

    /// Wakes every waiter; later puts and gets fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry(offset: u64, kind: EntryKind, length: u64) -> Converted {
        Converted {
            bytes: Bytes::from(offset.to_string()),
            kind,
            position: BinlogPosition {
                journal_name: "bin.000001".into(),
                position: offset,
            },
            event_length: length,
            execute_time: 0,
            server_id: 1,
            rows: usize::from(kind == EntryKind::Row),
            resume_after: ResumePoint::at("bin.000001", offset + length),
            gtid: None,
        }
    }

    fn store(buffer_size: u32, batch_mode: BatchMode) -> Store {
        let config = StoreConfig {
            buffer_size,
            batch_mode,
            mem_unit: 100,
        };
        let store = Store::new(&config);
        store.start_at(ResumePoint::at("bin.000001", 4));
        store
    }

    #[tokio::test]
    async fn batches_are_numbered_and_acked_in_order() {
        let s = store(16, BatchMode::Itemsize);
        for i in 0..5 {
            s.put(entry(100 + i * 10, EntryKind::Row, 10)).await.unwrap();
        }
        let b1 = s.get("1001", 2, Wait::No).await.unwrap();
        let b2 = s.get("1001", 2, Wait::No).await.unwrap();
        assert_eq!((b1.id, b1.entries.len(), b2.id), (1, 2, 2));
        assert_eq!(s.ack("1001", 2), Err(StoreError::NotFirst { batch_id: 2, first: 1 }));
        assert_eq!(
            s.ack("1001", 9).unwrap_err().to_string(),
            "ack error , clientId:1001 batchId:9 is not exist , please check"
        );
        let acked = s.ack("1001", 1).unwrap();
        assert_eq!(acked.resume, ResumePoint::at("bin.000001", 120));
        assert_eq!(acked.rows, 2);
        assert_eq!(s.stats().entries, 3);
    }

    #[tokio::test]
    async fn rollback_redelivers_unacked_entries() {
        let s = store(16, BatchMode::Itemsize);
        for i in 0..4 {
            s.put(entry(i, EntryKind::Row, 1)).await.unwrap();
        }
        let first = s.get("1001", 3, Wait::No).await.unwrap();
        s.rollback("1001", 0).unwrap();
        let again = s.get("1001", 10, Wait::No).await.unwrap();
        assert_eq!(again.entries[..3], first.entries[..]);
        assert_eq!(again.entries.len(), 4);
        assert_eq!(s.get("1001", 10, Wait::No).await.unwrap().id, -1);
    }

    #[tokio::test]
    async fn memsize_batches_hold_at_least_one_entry_and_may_overshoot_by_one() {
        let s = store(16, BatchMode::Memsize);
        for i in 0..4 {
            s.put(entry(i, EntryKind::Row, 150)).await.unwrap();
        }
        // 1 unit = 100 bytes: the first entry already exceeds it.
        assert_eq!(s.get("1001", 1, Wait::No).await.unwrap().entries.len(), 1);
        // 2 units = 200 bytes: 150 is within, the second (300) overshoots and ends the batch.
        assert_eq!(s.get("1001", 2, Wait::No).await.unwrap().entries.len(), 2);
    }

    #[tokio::test]
    async fn full_store_blocks_put_until_ack() {
        let s = Arc::new(store(2, BatchMode::Itemsize));
        s.put(entry(1, EntryKind::Row, 1)).await.unwrap();
        s.put(entry(2, EntryKind::End, 1)).await.unwrap();
        assert!(s.is_full());
        let writer = {
            let s = s.clone();
            tokio::spawn(async move { s.put(entry(3, EntryKind::Row, 1)).await })
        };
        tokio::task::yield_now().await;
        assert!(!writer.is_finished());
        let batch = s.get("1001", 10, Wait::No).await.unwrap();
        let acked = s.ack("1001", batch.id).unwrap();
        assert_eq!(acked.boundary.unwrap().position.position, 2);
        writer.await.unwrap().unwrap();
        assert_eq!(s.stats().entries, 1);
    }

    #[tokio::test]
    async fn blocking_get_waits_for_a_full_batch_or_the_timeout() {
        let s = Arc::new(store(16, BatchMode::Itemsize));
        let reader = {
            let s = s.clone();
            tokio::spawn(async move { s.get("1001", 2, Wait::Forever).await })
        };
        s.put(entry(1, EntryKind::Row, 1)).await.unwrap();
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        s.put(entry(2, EntryKind::Row, 1)).await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap().entries.len(), 2);

        s.put(entry(3, EntryKind::Row, 1)).await.unwrap();
        let partial = s.get("1001", 5, Wait::Up(Duration::from_millis(20))).await.unwrap();
        assert_eq!(partial.entries.len(), 1);
    }

    #[tokio::test]
    async fn a_get_waiting_for_more_than_a_full_store_holds_takes_what_is_there() {
        // Room for 3 entries, and a get that wants 5 and would wait forever.
        let s = Arc::new(store(3, BatchMode::Itemsize));
        let reader = {
            let s = s.clone();
            tokio::spawn(async move { s.get("1001", 5, Wait::Forever).await })
        };
        for i in 0..3 {
            s.put(entry(i, EntryKind::Row, 1)).await.unwrap();
        }
        let writer = {
            let s = s.clone();
            tokio::spawn(async move { s.put(entry(3, EntryKind::Row, 1)).await })
        };
        let batch = reader.await.unwrap().unwrap();
        assert_eq!(batch.entries.len(), 3);
        s.ack("1001", batch.id).unwrap();
        writer.await.unwrap().unwrap();
        // With everything handed out and nothing new, a waiting get keeps waiting instead of spinning on empty
        // batches.
        let waiting = s.get("1001", 5, Wait::Up(Duration::from_millis(30))).await.unwrap();
        assert_eq!(waiting.entries.len(), 1);
    }

    #[tokio::test]
    async fn memsize_gets_are_woken_by_bytes_and_a_cancelled_get_leaves_no_threshold() {
        let s = Arc::new(store(100, BatchMode::Memsize));
        // 3 units of 100 bytes.
        let cancelled = tokio::time::timeout(Duration::from_millis(10), s.get("1001", 3, Wait::Forever)).await;
        assert!(cancelled.is_err());
        assert!(s.lock().waiting.is_empty());
        let reader = {
            let s = s.clone();
            tokio::spawn(async move { s.get("1001", 3, Wait::Forever).await })
        };
        for i in 0..2 {
            s.put(entry(i * 150, EntryKind::Row, 150)).await.unwrap();
            tokio::task::yield_now().await;
        }
        let batch = reader.await.unwrap().unwrap();
        assert_eq!(batch.entries.len(), 2);
        assert!(s.lock().waiting.is_empty());
        s.rollback("1001", 0).unwrap();
        assert_eq!(s.get("1001", 3, Wait::No).await.unwrap().entries.len(), 2);
    }

    #[tokio::test]
    async fn close_wakes_waiters() {
        let s = Arc::new(store(16, BatchMode::Itemsize));
        let reader = {
            let s = s.clone();
            tokio::spawn(async move { s.get("1001", 2, Wait::Forever).await })
        };
        tokio::task::yield_now().await;
        s.close();
        assert_eq!(reader.await.unwrap().unwrap_err(), StoreError::Closed);
    }
}
