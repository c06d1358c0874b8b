//! virtio-gpu through the device harness: every command, and malformed ones.

use super::protocol::*;
use super::{Gpu, GpuHandle, GpuOptions};
use crate::harness::virtio::{msi_data, Buffer, VirtioDriver};
use crate::harness::Harness;
use crate::scanout::{CursorImage, PixelFormat, Rect, ScanoutSink, Surface};
use crate::virtio::features;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use vm_memory::GuestAddress;

const WAIT: Duration = Duration::from_secs(5);

type Mode = Option<(u32, u32, PixelFormat)>;

#[derive(Default)]
struct Recorded {
    modes: Vec<(u32, Mode)>,
    updates: Vec<(u32, Rect, Vec<u8>)>,
    cursors: Vec<Option<CursorImage>>,
    positions: Vec<(u32, u32)>,
}

#[derive(Default)]
struct RecordingSink(Mutex<Recorded>);

impl ScanoutSink for RecordingSink {
    fn configure(&self, index: u32, mode: Option<(u32, u32, PixelFormat)>) {
        self.0.lock().modes.push((index, mode));
    }
    fn update(&self, index: u32, surface: &Surface, dirty: Rect) {
        // Keep the dirty rectangle's pixels.
        let mut pixels = Vec::new();
        for y in dirty.y..dirty.y + dirty.height {
            let start = ((y * surface.width + dirty.x) * 4) as usize;
            pixels.extend_from_slice(&surface.pixels[start..start + dirty.width as usize * 4]);
        }
        self.0.lock().updates.push((index, dirty, pixels));
    }
    fn cursor_image(&self, _index: u32, image: Option<&CursorImage>) {
        self.0.lock().cursors.push(image.cloned());
    }
    fn cursor_position(&self, _index: u32, x: u32, y: u32) {
        self.0.lock().positions.push((x, y));
    }
}

struct Setup {
    harness: Harness,
    sink: Arc<RecordingSink>,
    handle: GpuHandle,
    address: crate::pci::PciAddress,
}

fn setup(budget: u64) -> Setup {
    let harness = Harness::new(64 << 20);
    let sink = Arc::new(RecordingSink::default());
    let (gpu, handle) = Gpu::new(
        &GpuOptions {
            budget,
            ..GpuOptions::default()
        },
        Some(sink.clone()),
    );
    let address = harness.add_virtio(Box::new(gpu)).unwrap();
    Setup {
        harness,
        sink,
        handle,
        address,
    }
}

fn header(kind: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&[0; 20]);
    h
}

fn command(kind: u32, fields: &[u32]) -> Vec<u8> {
    let mut c = header(kind);
    for f in fields {
        c.extend_from_slice(&f.to_le_bytes());
    }
    c
}

/// Sends `cmd` on `queue` and returns the response.
fn send(d: &mut VirtioDriver, queue: u16, cmd: &[u8]) -> Vec<u8> {
    let h = d.harness;
    let request = h.alloc(cmd.len() as u64, 8);
    h.write_mem(request, cmd);
    let response = h.alloc(2048, 8);
    let head = d.submit(
        queue,
        &[
            Buffer::readable(request, cmd.len() as u32),
            Buffer::writable(response, 2048),
        ],
    );
    let used = d.wait_used(queue, WAIT).expect("response");
    assert_eq!(used.id, u32::from(head));
    h.read_mem(response, used.len as usize)
}

fn kind_of(response: &[u8]) -> u32 {
    u32::from_le_bytes(response[0..4].try_into().unwrap())
}

fn ctrl(d: &mut VirtioDriver, kind: u32, fields: &[u32]) -> u32 {
    kind_of(&send(d, 0, &command(kind, fields)))
}

fn driver<'h>(s: &'h Setup) -> VirtioDriver<'h> {
    let mut d = VirtioDriver::probe(&s.harness, s.address);
    d.init(features::RING_EVENT_IDX | F_EDID);
    d
}

/// Attaches `len` bytes of fresh guest memory (in two pieces) to resource `id`; returns it.
fn attach(d: &mut VirtioDriver, id: u32, len: u64) -> GuestAddress {
    let backing = d.harness.alloc(len, 4096);
    let half = (len / 2) as u32;
    let mut cmd = command(CMD_RESOURCE_ATTACH_BACKING, &[id, 2]);
    for (address, size) in [
        (backing.0, half),
        (backing.0 + u64::from(half), len as u32 - half),
    ] {
        cmd.extend_from_slice(&address.to_le_bytes());
        cmd.extend_from_slice(&size.to_le_bytes());
        cmd.extend_from_slice(&0u32.to_le_bytes());
    }
    assert_eq!(kind_of(&send(d, 0, &cmd)), RESP_OK_NODATA);
    backing
}

fn transfer(d: &mut VirtioDriver, id: u32, rect: Rect, offset: u64) -> u32 {
    let mut cmd = command(
        CMD_TRANSFER_TO_HOST_2D,
        &[rect.x, rect.y, rect.width, rect.height],
    );
    cmd.extend_from_slice(&offset.to_le_bytes());
    cmd.extend_from_slice(&id.to_le_bytes());
    cmd.extend_from_slice(&0u32.to_le_bytes());
    kind_of(&send(d, 0, &cmd))
}

#[test]
fn display_info_and_edid() {
    let s = setup(64 << 20);
    let mut d = driver(&s);
    let info = send(&mut d, 0, &header(CMD_GET_DISPLAY_INFO));
    assert_eq!(kind_of(&info), RESP_OK_DISPLAY_INFO);
    assert_eq!(info.len(), HEADER_LEN + 16 * 24);
    let field = |i: usize| {
        u32::from_le_bytes(
            info[HEADER_LEN + 4 * i..HEADER_LEN + 4 * i + 4]
                .try_into()
                .unwrap(),
        )
    };
    assert_eq!(
        (field(2), field(3), field(4)),
        (1024, 768, 1),
        "scanout 0 enabled at 1024x768"
    );
    assert_eq!(field(6 + 4), 0, "scanout 1 disabled");
    let edid = send(&mut d, 0, &command(CMD_GET_EDID, &[0, 0]));
    assert_eq!(kind_of(&edid), RESP_OK_EDID);
    assert_eq!(u32::from_le_bytes(edid[24..28].try_into().unwrap()), 128);
    assert_eq!(&edid[32..40], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(
        ctrl(&mut d, CMD_GET_EDID, &[5, 0]),
        RESP_ERR_INVALID_SCANOUT_ID
    );
    // num_scanouts in the config space.
    assert_eq!(d.config_read32(8), 1);
}

#[test]
fn a_frame_from_guest_memory_to_the_sink() {
    let s = setup(64 << 20);
    let mut d = driver(&s);
    let (w, h) = (64u32, 32u32);
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[7, 2, w, h]),
        RESP_OK_NODATA
    );
    let backing = attach(&mut d, 7, u64::from(w * h * 4));
    // B, G, R, X per pixel; the pixel at (x, y) has B = x, G = y.
    let pixels: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).flat_map(move |x| [x as u8, y as u8, 0x80, 0]))
        .collect();
    s.harness.write_mem(backing, &pixels);
    assert_eq!(
        transfer(&mut d, 7, Rect::new(0, 0, w, h), 0),
        RESP_OK_NODATA
    );
    assert_eq!(
        ctrl(&mut d, CMD_SET_SCANOUT, &[0, 0, w, h, 0, 7]),
        RESP_OK_NODATA
    );
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_FLUSH, &[8, 4, 16, 8, 7, 0]),
        RESP_OK_NODATA
    );
    {
        let rec = s.sink.0.lock();
        assert_eq!(
            rec.modes.last(),
            Some(&(0, Some((w, h, PixelFormat::Bgrx))))
        );
        let (index, rect, dirty) = rec.updates.last().unwrap();
        assert_eq!((*index, *rect), (0, Rect::new(8, 4, 16, 8)));
        assert_eq!(&dirty[0..4], &[8, 4, 0x80, 0], "pixel (8, 4)");
    }
    // A partial transfer lands where the offset says.
    let changed: Vec<u8> = [1u8, 2, 3, 0].repeat(4);
    let offset = u64::from((10 * w + 20) * 4);
    s.harness
        .write_mem(GuestAddress(backing.0 + offset), &changed);
    assert_eq!(
        transfer(&mut d, 7, Rect::new(20, 10, 4, 1), offset),
        RESP_OK_NODATA
    );
    let (sw, sh, rgba) = s.handle.snapshot(0).unwrap();
    assert_eq!((sw, sh), (w, h));
    let at = |x: u32, y: u32| &rgba[((y * w + x) * 4) as usize..((y * w + x) * 4 + 4) as usize];
    assert_eq!(at(20, 10), &[3, 2, 1, 0xff], "BGRX swizzled to RGBA");
    assert_eq!(at(5, 6), &[0x80, 6, 5, 0xff]);
    // Detach, unref: the scanout goes dark and the sink hears it.
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_DETACH_BACKING, &[7, 0]),
        RESP_OK_NODATA
    );
    assert_eq!(
        transfer(&mut d, 7, Rect::new(0, 0, 1, 1), 0),
        RESP_ERR_UNSPEC,
        "no backing"
    );
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_UNREF, &[7, 0]), RESP_OK_NODATA);
    assert_eq!(s.sink.0.lock().modes.last(), Some(&(0, None)));
    assert!(s.handle.snapshot(0).is_none());
}

#[test]
fn malformed_commands_get_errors() {
    let s = setup(1 << 20);
    let mut d = driver(&s);
    let res = RESP_ERR_INVALID_RESOURCE_ID;
    let param = RESP_ERR_INVALID_PARAMETER;
    // Unknown resource ids.
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_UNREF, &[99, 0]), res);
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_FLUSH, &[0, 0, 1, 1, 99, 0]), res);
    assert_eq!(ctrl(&mut d, CMD_SET_SCANOUT, &[0, 0, 1, 1, 0, 99]), res);
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_DETACH_BACKING, &[99, 0]), res);
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_ATTACH_BACKING, &[99, 0]), res);
    assert_eq!(transfer(&mut d, 99, Rect::new(0, 0, 1, 1), 0), res);
    // Bad creations: id 0, duplicates, formats, sizes, overflowing sizes, the budget.
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[0, 1, 8, 8]), res);
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[1, 1, 8, 8]),
        RESP_OK_NODATA
    );
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[1, 1, 8, 8]), res);
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[2, 999, 8, 8]), param);
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[2, 1, 0, 8]), param);
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[2, 1, u32::MAX, u32::MAX]),
        param
    );
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[2, 1, 1024, 1024]),
        RESP_ERR_OUT_OF_MEMORY
    );
    // Rectangles outside the resource, and ones whose arithmetic overflows.
    attach(&mut d, 1, 8 * 8 * 4);
    assert_eq!(transfer(&mut d, 1, Rect::new(4, 4, 8, 8), 0), param);
    assert_eq!(transfer(&mut d, 1, Rect::new(u32::MAX, 0, 2, 1), 0), param);
    assert_eq!(
        transfer(&mut d, 1, Rect::new(0, 0, 8, 8), u64::MAX - 10),
        param
    );
    assert_eq!(
        transfer(&mut d, 1, Rect::new(0, 0, 8, 8), 4),
        param,
        "reads past the backing"
    );
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_FLUSH, &[0, u32::MAX, 1, 2, 1, 0]),
        param
    );
    assert_eq!(ctrl(&mut d, CMD_SET_SCANOUT, &[0, 0, 9, 8, 0, 1]), param);
    assert_eq!(
        ctrl(&mut d, CMD_SET_SCANOUT, &[0, 0, 8, 8, 3, 1]),
        RESP_ERR_INVALID_SCANOUT_ID
    );
    // Backing outside guest memory, and absurd entry counts.
    let mut cmd = command(CMD_RESOURCE_ATTACH_BACKING, &[1, 1]);
    cmd.extend_from_slice(&(1u64 << 40).to_le_bytes());
    cmd.extend_from_slice(&4096u32.to_le_bytes());
    cmd.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(kind_of(&send(&mut d, 0, &cmd)), RESP_ERR_UNSPEC);
    let mut cmd = command(CMD_RESOURCE_ATTACH_BACKING, &[1, 1]);
    cmd.extend_from_slice(&(u64::MAX - 16).to_le_bytes());
    cmd.extend_from_slice(&4096u32.to_le_bytes());
    cmd.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(kind_of(&send(&mut d, 0, &cmd)), RESP_ERR_UNSPEC);
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_ATTACH_BACKING, &[1, u32::MAX]),
        param
    );
    // Entries the command claims but does not carry.
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_ATTACH_BACKING, &[1, 3]),
        RESP_ERR_UNSPEC
    );
    // Short and unknown commands.
    assert_eq!(kind_of(&send(&mut d, 0, &[1, 2, 3])), RESP_ERR_UNSPEC);
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[3]), RESP_ERR_UNSPEC);
    assert_eq!(ctrl(&mut d, 0x9999, &[]), RESP_ERR_UNSPEC);
    // Freed resources give their budget back.
    assert_eq!(ctrl(&mut d, CMD_RESOURCE_UNREF, &[1, 0]), RESP_OK_NODATA);
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[2, 1, 512, 512]),
        RESP_OK_NODATA
    );
    // The device is healthy throughout.
    assert_eq!(d.status() & crate::virtio::status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn fences_are_echoed() {
    let s = setup(64 << 20);
    let mut d = driver(&s);
    let mut cmd = command(CMD_GET_DISPLAY_INFO, &[]);
    cmd[4..8].copy_from_slice(&FLAG_FENCE.to_le_bytes());
    cmd[8..16].copy_from_slice(&0x1234_5678u64.to_le_bytes());
    let response = send(&mut d, 0, &cmd);
    assert_eq!(
        u32::from_le_bytes(response[4..8].try_into().unwrap()),
        FLAG_FENCE
    );
    assert_eq!(
        u64::from_le_bytes(response[8..16].try_into().unwrap()),
        0x1234_5678
    );
}

#[test]
fn display_size_changes_reach_the_driver() {
    let s = setup(64 << 20);
    let mut d = driver(&s);
    let config_vector = d.num_queues();
    s.handle.set_display_size(0, 1280, 800);
    assert!(
        s.harness.msi.wait_count(msi_data(config_vector), 1, WAIT),
        "config interrupt"
    );
    assert_eq!(d.config_read32(0), EVENT_DISPLAY, "events_read");
    let info = send(&mut d, 0, &header(CMD_GET_DISPLAY_INFO));
    let width = u32::from_le_bytes(info[HEADER_LEN + 8..HEADER_LEN + 12].try_into().unwrap());
    assert_eq!(width, 1280);
    // events_clear.
    s.harness.writel(d.device_config + 4, EVENT_DISPLAY);
    assert_eq!(d.config_read32(0), 0);
    // The same size again is no event.
    s.handle.set_display_size(0, 1280, 800);
    assert_eq!(d.config_read32(0), 0);
}

#[test]
fn cursor_queue() {
    let s = setup(64 << 20);
    let mut d = driver(&s);
    assert_eq!(
        ctrl(&mut d, CMD_RESOURCE_CREATE_2D, &[5, 1, 64, 64]),
        RESP_OK_NODATA
    );
    let backing = attach(&mut d, 5, 64 * 64 * 4);
    s.harness
        .write_mem(backing, &[0x10, 0x20, 0x30, 0xff].repeat(64 * 64));
    assert_eq!(
        transfer(&mut d, 5, Rect::new(0, 0, 64, 64), 0),
        RESP_OK_NODATA
    );
    let update = command(CMD_UPDATE_CURSOR, &[0, 100, 50, 0, 5, 3, 4, 0]);
    assert_eq!(kind_of(&send(&mut d, 1, &update)), RESP_OK_NODATA);
    let moved = command(CMD_MOVE_CURSOR, &[0, 200, 75, 0, 0, 0, 0, 0]);
    assert_eq!(kind_of(&send(&mut d, 1, &moved)), RESP_OK_NODATA);
    let bad = command(CMD_UPDATE_CURSOR, &[0, 0, 0, 0, 77, 0, 0, 0]);
    assert_eq!(
        kind_of(&send(&mut d, 1, &bad)),
        RESP_ERR_INVALID_RESOURCE_ID
    );
    let bad_scanout = command(CMD_MOVE_CURSOR, &[9, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        kind_of(&send(&mut d, 1, &bad_scanout)),
        RESP_ERR_INVALID_SCANOUT_ID
    );
    let rec = s.sink.0.lock();
    let image = rec.cursors.last().unwrap().as_ref().unwrap();
    assert_eq!((image.width, image.hot_x, image.hot_y), (64, 3, 4));
    assert_eq!(&image.rgba[0..4], &[0x30, 0x20, 0x10, 0xff]);
    assert_eq!(rec.positions, vec![(100, 50), (200, 75)]);
}
