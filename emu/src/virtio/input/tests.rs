//! virtio-input through the harness: events reach the event queue in order.

use super::{evdev, Input, InputEvent, InputQueue};
use crate::harness::virtio::{Buffer, VirtioDriver};
use crate::harness::Harness;
use std::time::Duration;

#[test]
fn events_arrive_in_order_and_wait_for_buffers() {
    let h = Harness::new(16 << 20);
    let queue = InputQueue::new().unwrap();
    let address = h
        .add_virtio(Box::new(Input::keyboard(queue.clone())))
        .unwrap();
    let mut d = VirtioDriver::probe(&h, address);
    d.init(0);
    // Events sent before the guest offered buffers wait for them.
    queue.send(&[InputEvent::key(30, true), InputEvent::sync()]);
    let buffers: Vec<_> = (0..6).map(|_| h.alloc(8, 8)).collect();
    for b in &buffers {
        d.submit(0, &[Buffer::writable(*b, 8)]);
    }
    queue.send(&[
        InputEvent::key(30, false),
        InputEvent::sync(),
        InputEvent::key(99, true),
    ]);
    let mut got = Vec::new();
    for _ in 0..5 {
        let used = d.wait_used(0, Duration::from_secs(5)).expect("an event");
        assert_eq!(used.len, 8);
        let raw = h.read_mem(buffers[used.id as usize], 8);
        got.push((
            u16::from_le_bytes([raw[0], raw[1]]),
            u16::from_le_bytes([raw[2], raw[3]]),
            u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        ));
    }
    assert_eq!(
        got,
        vec![
            (evdev::EV_KEY, 30, 1),
            (evdev::EV_SYN, 0, 0),
            (evdev::EV_KEY, 30, 0),
            (evdev::EV_SYN, 0, 0),
            (evdev::EV_KEY, 99, 1),
        ]
    );
}

#[test]
fn with_event_idx_a_device_out_of_buffers_asks_for_the_next_one() {
    let h = Harness::new(16 << 20);
    let queue = InputQueue::new().unwrap();
    let address = h
        .add_virtio(Box::new(Input::keyboard(queue.clone())))
        .unwrap();
    let mut d = VirtioDriver::probe(&h, address);
    d.init(crate::virtio::features::RING_EVENT_IDX);
    let buffer = h.alloc(8, 8);
    d.submit(0, &[Buffer::writable(buffer, 8)]);
    queue.send(&[InputEvent::key(30, true)]);
    d.wait_used(0, Duration::from_secs(5))
        .expect("the first event");
    // The next event finds no buffer: the device must ask to be notified of the guest's next
    // one (avail_event = the available index now), or the guest never rings again.
    queue.send(&[InputEvent::key(30, false)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while d.avail_event(0) != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "avail_event stayed {}",
            d.avail_event(0)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    d.submit(0, &[Buffer::writable(buffer, 8)]);
    let used = d
        .wait_used(0, Duration::from_secs(5))
        .expect("the held event");
    assert_eq!(used.len, 8);
    assert_eq!(h.read_mem(buffer, 4), [1, 0, 30, 0], "EV_KEY 30 released");
}

#[test]
fn tablet_events_and_a_bad_buffer() {
    let h = Harness::new(16 << 20);
    let queue = InputQueue::new().unwrap();
    let address = h
        .add_virtio(Box::new(Input::tablet(queue.clone())))
        .unwrap();
    let mut d = VirtioDriver::probe(&h, address);
    d.init(0);
    // A buffer outside guest memory gets nothing written; the next event goes on.
    d.submit(0, &[Buffer::writable(vm_memory::GuestAddress(1 << 40), 8)]);
    let good = h.alloc(8, 8);
    d.submit(0, &[Buffer::writable(good, 8)]);
    queue.send(&[
        InputEvent::new(evdev::EV_ABS, evdev::ABS_X, 100),
        InputEvent::new(evdev::EV_ABS, evdev::ABS_Y, 200),
    ]);
    assert_eq!(d.wait_used(0, Duration::from_secs(5)).unwrap().len, 0);
    assert_eq!(d.wait_used(0, Duration::from_secs(5)).unwrap().len, 8);
    assert_eq!(h.read_mem(good, 8), vec![3, 0, 1, 0, 200, 0, 0, 0]);
}
