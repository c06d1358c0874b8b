//! What one guest frame costs on its way to the screen: from guest memory, through
//! virtio-gpu's TRANSFER_TO_HOST_2D and RESOURCE_FLUSH (driven through the device harness, as a
//! guest driver would), the scanout sink's mirror, to the renderer's texture upload, waited
//! for on the GPU. Prints wall and CPU time per frame for a full 1920x1080 frame and for a
//! 64x64 dirty rectangle.
//!
//! Run: `cargo bench -p display --bench frame_cost` (`FRAMES=n` to change the count).

use display::offscreen::Offscreen;
use display::{FrameSink, Frames};
use emu::harness::virtio::{Buffer, VirtioDriver};
use emu::harness::Harness;
use emu::scanout::Rect;
use emu::virtio::gpu::protocol::*;
use emu::virtio::gpu::{Gpu, GpuOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

const W: u32 = 1920;
const H: u32 = 1080;

fn command(kind: u32, fields: &[u32], tail: &[u8]) -> Vec<u8> {
    let mut c = kind.to_le_bytes().to_vec();
    c.extend_from_slice(&[0; 20]);
    for f in fields {
        c.extend_from_slice(&f.to_le_bytes());
    }
    c.extend_from_slice(tail);
    c
}

struct Guest<'h> {
    driver: VirtioDriver<'h>,
    request: vm_memory::GuestAddress,
    response: vm_memory::GuestAddress,
}

impl Guest<'_> {
    fn send(&mut self, cmd: &[u8]) -> u32 {
        let h = self.driver.harness;
        h.write_mem(self.request, cmd);
        self.driver.submit(
            0,
            &[
                Buffer::readable(self.request, cmd.len() as u32),
                Buffer::writable(self.response, 64),
            ],
        );
        self.driver
            .wait_used_interrupt(0, Duration::from_secs(10))
            .expect("the GPU answered");
        let raw = h.read_mem(self.response, 4);
        u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])
    }
}

/// CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the valid, writable pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Per-frame wall ms, CPU ms and bytes uploaded for `count` updates of `rect`; `arrived`
/// waits until the update reached `frames` (at once in-process).
fn measure(
    guest: &mut Guest,
    offscreen: &mut Offscreen,
    frames: &Frames,
    rect: Rect,
    count: u32,
    arrived: &dyn Fn(),
) -> (f64, f64, u64) {
    let Rect {
        x,
        y,
        width: w,
        height: h,
    } = rect;
    let offset = (u64::from(y) * u64::from(W) + u64::from(x)) * 4;
    let mut transfer = command(
        CMD_TRANSFER_TO_HOST_2D,
        &[x, y, w, h],
        &offset.to_le_bytes(),
    );
    transfer.extend_from_slice(&1u32.to_le_bytes());
    transfer.extend_from_slice(&0u32.to_le_bytes());
    let flush = command(CMD_RESOURCE_FLUSH, &[x, y, w, h, 1, 0], &[]);
    let wall = Instant::now();
    let cpu = cpu_time();
    let mut uploaded = 0;
    for _ in 0..count {
        assert_eq!(guest.send(&transfer), RESP_OK_NODATA);
        assert_eq!(guest.send(&flush), RESP_OK_NODATA);
        arrived();
        uploaded += offscreen.upload(frames);
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(count);
    (
        per(wall.elapsed()),
        per(cpu_time() - cpu),
        uploaded / u64::from(count),
    )
}

/// The link between a VM process's shared mirror (`vm`) and the app's (`app`): a forwarder
/// thread sends the screen and dirty rectangles as the VM process does, a reader thread
/// decodes them as the app does. Returns a wait for the next update's arrival.
fn link(vm: Arc<Frames>, app: Arc<Frames>) -> impl Fn() {
    use emu::control::link::{LinkSocket, ToGui, MAX_MESSAGE_BYTES};
    use std::sync::mpsc::channel;
    let (vm_end, app_end) = LinkSocket::pair().expect("socket pair");
    let (wake, woken) = channel::<()>();
    vm.set_waker(move || {
        let _ = wake.send(());
    });
    std::thread::spawn(move || {
        let mut generation = None;
        while woken.recv().is_ok() {
            while woken.try_recv().is_ok() {}
            let (screen, dirty) = vm.take_changes(|c| {
                let screen = c.mirror.and_then(|m| {
                    (generation != Some(m.generation)).then(|| {
                        generation = Some(m.generation);
                        let fd = m.pixels.shared().map(|s| s.fd().try_clone_to_owned());
                        (m.width, m.height, m.format, fd)
                    })
                });
                (screen, c.dirty)
            });
            if let Some((width, height, format, Some(Ok(fd)))) = screen {
                let message = ToGui::Screen {
                    width,
                    height,
                    format,
                }
                .encode();
                vm_end
                    .send(&message, Some(std::os::fd::AsFd::as_fd(&fd)))
                    .expect("send");
            } else if let Some(rect) = dirty {
                vm_end
                    .send(&ToGui::Dirty(rect).encode(), None)
                    .expect("send");
            }
        }
    });
    let (arrive, arrival) = channel::<()>();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
        while let Ok(Some(received)) = app_end.receive(&mut buffer) {
            match ToGui::decode(&buffer[..received.len]).expect("decode") {
                ToGui::Screen {
                    width,
                    height,
                    format,
                } => {
                    let fd = received.fd.expect("the screen's memfd");
                    let len = width as usize * height as usize * 4;
                    let pixels = display::SharedPixels::attach(fd, len).expect("map");
                    app.attach(width, height, format, pixels);
                }
                ToGui::Dirty(rect) => {
                    app.mark_dirty(rect);
                }
                _ => {}
            }
            let _ = arrive.send(());
        }
    });
    move || {
        arrival
            .recv_timeout(Duration::from_secs(10))
            .expect("the update crossed the link");
    }
}

/// Runs the full-frame and 64x64 measurements of one path.
fn run(label: &str, shared: bool, count: u32, offscreen: &mut Offscreen) {
    let harness = Harness::new(64 << 20);
    let (sink_frames, shown, arrived): (Arc<Frames>, Arc<Frames>, Box<dyn Fn()>) = if shared {
        let vm = Frames::new_shared();
        let app = Frames::new();
        let arrived = link(vm.clone(), app.clone());
        (vm, app, Box::new(arrived))
    } else {
        let frames = Frames::new();
        (frames.clone(), frames, Box::new(|| {}))
    };
    let (gpu, _handle) = Gpu::new(
        &GpuOptions::default(),
        Some(Arc::new(FrameSink(sink_frames.clone()))),
    );
    let address = harness.add_virtio(Box::new(gpu)).expect("GPU");
    let mut driver = VirtioDriver::probe(&harness, address);
    driver.init(emu::virtio::features::RING_EVENT_IDX);
    let mut guest = Guest {
        driver,
        request: harness.alloc(4096, 8),
        response: harness.alloc(64, 8),
    };
    let bytes = u64::from(W * H * 4);
    let backing = harness.alloc(bytes, 4096);
    let pixels: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
    harness.write_mem(backing, &pixels);
    assert_eq!(
        guest.send(&command(CMD_RESOURCE_CREATE_2D, &[1, 2, W, H], &[])),
        RESP_OK_NODATA
    );
    let mut entry = backing.0.to_le_bytes().to_vec();
    entry.extend_from_slice(&(bytes as u32).to_le_bytes());
    entry.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        guest.send(&command(CMD_RESOURCE_ATTACH_BACKING, &[1, 1], &entry)),
        RESP_OK_NODATA
    );
    assert_eq!(
        guest.send(&command(CMD_SET_SCANOUT, &[0, 0, W, H, 0, 1], &[])),
        RESP_OK_NODATA
    );
    arrived();
    offscreen.upload(&shown);

    let (wall, cpu, uploaded) = measure(
        &mut guest,
        offscreen,
        &shown,
        Rect::new(0, 0, W, H),
        count,
        &*arrived,
    );
    println!("{label}: full {W}x{H} frame: wall {wall:.2} ms, CPU {cpu:.2} ms per frame ({uploaded} bytes uploaded)");
    let (wall, cpu, uploaded) = measure(
        &mut guest,
        offscreen,
        &shown,
        Rect::new(512, 256, 64, 64),
        count * 4,
        &*arrived,
    );
    println!("{label}: 64x64 dirty rectangle: wall {wall:.3} ms, CPU {cpu:.3} ms per frame ({uploaded} bytes uploaded)");
}

fn main() {
    let count: u32 = std::env::var("FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut offscreen = match Offscreen::new() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("frame_cost: no wgpu adapter: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "frame_cost: adapter {}, {count} frames each",
        offscreen.adapter_name
    );
    run("in-process", false, count, &mut offscreen);
    run("through the link", true, count, &mut offscreen);
}
