//! The worker thread of a virtio device: sleeps in epoll on the queues' doorbells and a stop
//! event, and runs the device's queue handler when a doorbell rings, off the vCPU threads.
//!
//! A device model only describes its [`Service`] (the doorbells to wait on and the handler);
//! the transport starts the worker on activation and drops it, with the queues the handler
//! owns, on reset. No device starts or stops a worker itself.

use super::{split_queues, ActivateError, ReadyQueue};
use std::io;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// A worker's handler: called with the index of the doorbell that rang; returns false to stop
/// serving (the device needs a reset). It owns the device's queues.
pub type Handler = Box<dyn FnMut(usize) -> bool + Send>;

/// What a device serves once activated: the doorbells its worker waits on and the handler it
/// runs for each, in the same order.
pub struct Service {
    /// Eventfds signalled when the driver notifies each queue.
    pub doorbells: Vec<EventFd>,
    /// Runs with the index (into `doorbells`) of the doorbell that rang.
    pub handler: Handler,
}

impl Service {
    /// Calls `handler(i)` when `doorbells[i]` rings.
    pub fn new<F>(doorbells: Vec<EventFd>, handler: F) -> Self
    where
        F: FnMut(usize) -> bool + Send + 'static,
    {
        Self {
            doorbells,
            handler: Box::new(handler),
        }
    }

    /// Serves every ready queue with `serve(index, queue)` when its doorbell rings. Queue 0
    /// must be among them.
    pub fn per_queue<F>(queues: Vec<ReadyQueue>, mut serve: F) -> Result<Self, ActivateError>
    where
        F: FnMut(u16, &mut virtio_queue::Queue) -> bool + Send + 'static,
    {
        if queues.first().map(|q| q.index) != Some(0) {
            return Err(ActivateError::MissingQueue(0));
        }
        let (doorbells, mut queues) = split_queues(queues);
        Ok(Self::new(doorbells, move |slot| {
            match queues.get_mut(slot) {
                Some((index, queue)) => serve(*index, queue),
                None => true,
            }
        }))
    }

    /// Starts a worker thread named `name` for this service.
    pub fn spawn(self, name: &str) -> io::Result<Worker> {
        Worker::spawn(name, self.doorbells, self.handler)
    }
}

/// A running worker; stopping it (or dropping it) waits for the thread to finish.
pub struct Worker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts a thread named `name` that calls `handler(i)` whenever `doorbells[i]` is
    /// signalled. The handler returns false to stop serving (the device needs a reset).
    pub fn spawn<F>(name: &str, doorbells: Vec<EventFd>, mut handler: F) -> io::Result<Self>
    where
        F: FnMut(usize) -> bool + Send + 'static,
    {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stop_for_thread = stop.try_clone()?;
        let epoll = Epoll::new()?;
        let stop_token = doorbells.len() as u64;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, stop_token),
        )?;
        for (index, doorbell) in doorbells.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                doorbell.as_raw_fd(),
                EpollEvent::new(EventSet::IN, index as u64),
            )?;
        }
        let thread = crate::threads::spawn(
            crate::threads::ThreadKind::DeviceWorker,
            name.to_string(),
            move || {
                let _stop = stop_for_thread;
                let mut events = vec![EpollEvent::default(); doorbells.len() + 1];
                // A doorbell may have rung before the worker existed (the driver notified
                // before DRIVER_OK); serve every queue once to catch up.
                for index in 0..doorbells.len() {
                    if !handler(index) {
                        return;
                    }
                }
                loop {
                    let count = match epoll.wait(-1, &mut events) {
                        Ok(count) => count,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::error!("worker epoll failed: {e}");
                            return;
                        }
                    };
                    for event in &events[..count] {
                        let token = event.data();
                        if token == stop_token {
                            return;
                        }
                        let Some(doorbell) = doorbells.get(token as usize) else {
                            continue;
                        };
                        // Non-blocking read: clears the counter; an empty counter is fine.
                        let _ = doorbell.read();
                        if !handler(token as usize) {
                            return;
                        }
                    }
                }
            },
        )?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Err(e) = self.stop.write(1) {
                log::error!("cannot stop worker: {e}");
            }
            if thread.join().is_err() {
                log::error!("a virtio worker thread panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}
