//! The app against a hostile VM process: a fake one listens on a link socket and sends
//! garbage, an oversized message, a bad screen, or nothing at all. The app ends the link with a
//! reason each time, and queuing input for a VM process that never reads never blocks.

use super::*;
use emu::control::link::LinkListener;
use std::os::fd::AsFd;

/// A fake VM process at a fresh socket; `behave` gets the accepted connection.
fn fake(tag: &str, behave: impl FnOnce(LinkSocket) + Send + 'static) -> (VmProcess, Arc<Frames>) {
    let dir = crate::test_support::TempDir::new(tag);
    let path = dir.0.join("link.sock");
    let listener = LinkListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let _dir = dir;
        let socket = listener.accept().unwrap();
        behave(socket);
    });
    let frames = Frames::new();
    let sinks = Sinks {
        frames: frames.clone(),
        scrollback: Arc::default(),
        ctx: egui::Context::default(),
    };
    let process = VmProcess::attach(Path::new("/nonexistent"), path, sinks).unwrap();
    (process, frames)
}

fn hello() -> Vec<u8> {
    ToGui::Hello {
        version: PROTOCOL_VERSION,
        pid: 1,
        display: true,
    }
    .encode()
}

/// Waits for the link to end; the reason it gave.
fn closed(process: &VmProcess, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(why) = process.state.lock().closed.clone() {
            return why;
        }
        assert!(Instant::now() < deadline, "the link did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn garbage_ends_the_link() {
    let (process, _) = fake("hostile-garbage", |s| {
        s.send(&hello(), None).unwrap();
        s.send(&[0xff, 1, 2, 3], None).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let why = closed(&process, Duration::from_secs(5));
    assert!(why.contains("malformed"), "{why}");
    assert!(matches!(process.outcome(), Some(Outcome::Crashed(_))));
}

#[test]
fn an_oversized_message_ends_the_link() {
    let (process, _) = fake("hostile-big", |s| {
        s.send(&hello(), None).unwrap();
        // Past the link's limit, sent raw (LinkSocket refuses to send it).
        let big = vec![10u8; MAX_MESSAGE_BYTES * 2];
        let _ = nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&s.as_fd()),
            &big,
            nix::sys::socket::MsgFlags::empty(),
        );
        std::thread::sleep(Duration::from_secs(2));
    });
    let why = closed(&process, Duration::from_secs(5));
    assert!(why.contains("larger than the link allows"), "{why}");
}

#[test]
fn a_screen_without_sealed_memory_is_refused() {
    let (process, _) = fake("hostile-screen", |s| {
        s.send(&hello(), None).unwrap();
        let screen = ToGui::Screen {
            width: 64,
            height: 64,
            format: emu::scanout::PixelFormat::Bgrx,
        };
        // A file that could shrink under the app's mapping.
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        s.send(&screen.encode(), Some(file.as_fd())).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let why = closed(&process, Duration::from_secs(5));
    assert!(why.contains("not sealed"), "{why}");
}

#[test]
fn a_silent_vm_process_is_given_up_and_input_never_blocks() {
    let (process, _) = fake("hostile-silent", |_s| {
        std::thread::sleep(Duration::from_secs(15));
    });
    let input = process.input();
    let started = Instant::now();
    for _ in 0..10 * OUTBOX {
        input.send_keyboard(&[InputEvent::new(1, 30, 1), InputEvent::new(0, 0, 0)]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "queuing input took {:?}",
        started.elapsed()
    );
    assert!(process.outcome().is_none(), "still waiting for the hello");
    let why = closed(&process, HELLO_TIMEOUT + Duration::from_secs(5));
    assert!(why.contains("did not answer in time"), "{why}");
}

#[test]
fn a_screen_and_its_changes_arrive_through_shared_memory() {
    let (process, frames) = fake("shared-screen", |s| {
        s.send(&hello(), None).unwrap();
        let mut pixels = SharedPixels::create(4 * 2 * 4).unwrap();
        pixels.as_mut_slice().unwrap()[..4].copy_from_slice(&[1, 2, 3, 4]);
        let screen = ToGui::Screen {
            width: 4,
            height: 2,
            format: emu::scanout::PixelFormat::Rgbx,
        };
        s.send(&screen.encode(), Some(pixels.fd())).unwrap();
        s.send(
            &ToGui::Dirty(emu::scanout::Rect::new(0, 0, 1, 1)).encode(),
            None,
        )
        .unwrap();
        s.send(&ToGui::Serial(b"hi".to_vec()).encode(), None)
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while frames.frame_count() == 0 {
        assert!(Instant::now() < deadline, "no dirty rectangle arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (width, height, rgba) = frames.rgba().unwrap();
    assert_eq!((width, height), (4, 2));
    assert_eq!(
        &rgba[..4],
        &[1, 2, 3, 255],
        "the bytes the VM process wrote"
    );
    assert!(
        process.state.lock().closed.is_none(),
        "a good VM process keeps its link"
    );
}
