//! The 2D GPU: resources (host copies of guest surfaces with their guest backing), scanouts,
//! the cursor, and the handling of every control and cursor command. Each check a malformed
//! command can fail answers with a `VIRTIO_GPU_RESP_ERR_*` code.

use super::edid::edid;
use super::protocol::*;
use crate::scanout::{CursorImage, PixelFormat, Rect, SharedSink, Surface};
use std::collections::BTreeMap;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Bytes per pixel of every supported format.
const BPP: u64 = 4;
/// The largest resource side Cove accepts.
pub const MAX_DIMENSION: u32 = 16384;
/// The most backing entries one resource may have.
pub const MAX_BACKING_ENTRIES: u32 = 16384;
/// The largest cursor image.
const MAX_CURSOR: u32 = 256;

/// A guest surface.
struct Resource {
    width: u32,
    height: u32,
    format: PixelFormat,
    pixels: Vec<u8>,
    /// Guest memory backing: (address, length) in order.
    backing: Vec<(GuestAddress, u32)>,
}

impl Resource {
    fn surface(&self) -> Surface<'_> {
        Surface {
            width: self.width,
            height: self.height,
            format: self.format,
            pixels: &self.pixels,
        }
    }

    fn backing_len(&self) -> u64 {
        self.backing.iter().map(|(_, len)| u64::from(*len)).sum()
    }

    /// Reads `buf.len()` bytes at `offset` of the backing.
    fn read_backing(&self, memory: &GuestMemoryMmap, mut offset: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        for (address, len) in &self.backing {
            let len = u64::from(*len);
            if offset >= len {
                offset -= len;
                continue;
            }
            let n = ((len - offset) as usize).min(buf.len() - done);
            let Some(at) = address.0.checked_add(offset) else {
                return false;
            };
            if memory
                .read_slice(&mut buf[done..done + n], GuestAddress(at))
                .is_err()
            {
                return false;
            }
            done += n;
            offset = 0;
            if done == buf.len() {
                return true;
            }
        }
        done == buf.len()
    }
}

/// One display output.
#[derive(Clone, Copy, Debug)]
pub struct Scanout {
    /// The size the host offers (the window).
    pub width: u32,
    /// The height the host offers, in pixels.
    pub height: u32,
    /// Whether the scanout is reported enabled in GET_DISPLAY_INFO; the first one always is.
    pub enabled: bool,
    /// The resource shown and the part of it.
    resource: u32,
    rect: Rect,
}

/// The device state behind both queues.
pub struct GpuState {
    resources: BTreeMap<u32, Resource>,
    scanouts: Vec<Scanout>,
    sink: Option<SharedSink>,
    budget: u64,
    used: u64,
    /// Pending config events (VIRTIO_GPU_EVENT_DISPLAY).
    pub events_read: u32,
}

/// A command outcome: the response type and any payload after the header.
type Outcome = (u32, Vec<u8>);

fn err(code: u32) -> Outcome {
    (code, Vec::new())
}

fn ok() -> Outcome {
    (RESP_OK_NODATA, Vec::new())
}

impl GpuState {
    /// A GPU with `scanouts` outputs of `width` x `height` (the first enabled) and `budget`
    /// bytes of host memory for resources.
    pub fn new(
        scanouts: usize,
        width: u32,
        height: u32,
        budget: u64,
        sink: Option<SharedSink>,
    ) -> Self {
        let scanouts = (0..scanouts.clamp(1, MAX_SCANOUTS))
            .map(|i| Scanout {
                width,
                height,
                enabled: i == 0,
                resource: 0,
                rect: Rect::default(),
            })
            .collect();
        Self {
            resources: BTreeMap::new(),
            scanouts,
            sink,
            budget,
            used: 0,
            events_read: 0,
        }
    }

    /// Number of scanouts, 1 to 16.
    pub fn scanout_count(&self) -> usize {
        self.scanouts.len()
    }

    /// Host bytes held by resources.
    pub fn memory_used(&self) -> u64 {
        self.used
    }

    /// The host resized scanout `index`'s window; returns whether the guest must be told.
    pub fn set_display_size(&mut self, index: usize, width: u32, height: u32) -> bool {
        let Some(scanout) = self.scanouts.get_mut(index) else {
            return false;
        };
        let (width, height) = (
            width.clamp(16, MAX_DIMENSION),
            height.clamp(16, MAX_DIMENSION),
        );
        if (scanout.width, scanout.height, scanout.enabled) == (width, height, true) {
            return false;
        }
        scanout.width = width;
        scanout.height = height;
        scanout.enabled = true;
        self.events_read |= EVENT_DISPLAY;
        true
    }

    /// What scanout `index` shows now, as RGBA (for screendumps).
    pub fn snapshot(&self, index: usize) -> Option<(u32, u32, Vec<u8>)> {
        let scanout = self.scanouts.get(index)?;
        let resource = self.resources.get(&scanout.resource)?;
        let rect = scanout.rect;
        let mut rgba = Vec::with_capacity(rect.width as usize * rect.height as usize * 4);
        for y in rect.y..rect.y + rect.height {
            let start = (u64::from(y) * u64::from(resource.width) + u64::from(rect.x)) * BPP;
            let end = start + u64::from(rect.width) * BPP;
            rgba.extend(
                resource
                    .format
                    .to_rgba(&resource.pixels[start as usize..end as usize]),
            );
        }
        Some((rect.width, rect.height, rgba))
    }

    /// Handles one control-queue command; returns the whole response.
    pub fn handle_control(&mut self, command: &[u8], memory: &GuestMemoryMmap) -> Vec<u8> {
        let mut reader = FieldReader::new(command);
        let Ok(header) = reader.header() else {
            log::debug!("virtio-gpu: command shorter than its header");
            return Header::default().response(RESP_ERR_UNSPEC);
        };
        let (kind, payload) = match self.dispatch(header.kind, &mut reader, memory) {
            Ok(outcome) => outcome,
            Err(ShortCommand) => {
                log::debug!("virtio-gpu: command {:#x} is too short", header.kind);
                err(RESP_ERR_UNSPEC)
            }
        };
        if kind >= RESP_ERR_UNSPEC {
            log::debug!(
                "virtio-gpu: command {:#x} failed with {kind:#x}",
                header.kind
            );
        }
        let mut response = header.response(kind);
        response.extend(payload);
        response
    }

    fn dispatch(
        &mut self,
        kind: u32,
        r: &mut FieldReader,
        memory: &GuestMemoryMmap,
    ) -> Result<Outcome, ShortCommand> {
        Ok(match kind {
            CMD_GET_DISPLAY_INFO => self.display_info(),
            CMD_GET_EDID => {
                let scanout = r.u32()?;
                self.edid(scanout)
            }
            CMD_RESOURCE_CREATE_2D => {
                let (id, format, width, height) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
                self.create_2d(id, format, width, height)
            }
            CMD_RESOURCE_UNREF => {
                let id = r.u32()?;
                self.unref(id)
            }
            CMD_SET_SCANOUT => {
                let rect = r.rect()?;
                let (scanout, id) = (r.u32()?, r.u32()?);
                self.set_scanout(scanout, id, rect)
            }
            CMD_RESOURCE_FLUSH => {
                let rect = r.rect()?;
                let id = r.u32()?;
                self.flush(id, rect)
            }
            CMD_TRANSFER_TO_HOST_2D => {
                let rect = r.rect()?;
                let offset = r.u64()?;
                let id = r.u32()?;
                self.transfer_to_host(id, rect, offset, memory)
            }
            CMD_RESOURCE_ATTACH_BACKING => {
                let (id, count) = (r.u32()?, r.u32()?);
                if count > MAX_BACKING_ENTRIES {
                    return Ok(err(RESP_ERR_INVALID_PARAMETER));
                }
                let mut entries = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let address = r.u64()?;
                    let len = r.u32()?;
                    r.u32()?;
                    entries.push((GuestAddress(address), len));
                }
                self.attach_backing(id, entries, memory)
            }
            CMD_RESOURCE_DETACH_BACKING => {
                let id = r.u32()?;
                match self.resources.get_mut(&id) {
                    Some(resource) => {
                        resource.backing.clear();
                        ok()
                    }
                    None => err(RESP_ERR_INVALID_RESOURCE_ID),
                }
            }
            other => {
                log::debug!("virtio-gpu: unsupported command {other:#x}");
                err(RESP_ERR_UNSPEC)
            }
        })
    }

    fn display_info(&self) -> Outcome {
        let mut payload = Vec::with_capacity(MAX_SCANOUTS * 24);
        for index in 0..MAX_SCANOUTS {
            let (rect, enabled) = match self.scanouts.get(index) {
                Some(s) => (Rect::new(0, 0, s.width, s.height), s.enabled),
                None => (Rect::default(), false),
            };
            for value in [
                rect.x,
                rect.y,
                rect.width,
                rect.height,
                u32::from(enabled),
                0,
            ] {
                payload.extend_from_slice(&value.to_le_bytes());
            }
        }
        (RESP_OK_DISPLAY_INFO, payload)
    }

    fn edid(&self, scanout: u32) -> Outcome {
        let Some(s) = self.scanouts.get(scanout as usize) else {
            return err(RESP_ERR_INVALID_SCANOUT_ID);
        };
        let block = edid(s.width, s.height);
        let mut payload = Vec::with_capacity(8 + 1024);
        payload.extend_from_slice(&(block.len() as u32).to_le_bytes());
        payload.extend_from_slice(&0u32.to_le_bytes());
        payload.extend_from_slice(&block);
        payload.resize(8 + 1024, 0);
        (RESP_OK_EDID, payload)
    }

    fn create_2d(&mut self, id: u32, format: u32, width: u32, height: u32) -> Outcome {
        if id == 0 || self.resources.contains_key(&id) {
            return err(RESP_ERR_INVALID_RESOURCE_ID);
        }
        let Some(format) = pixel_format(format) else {
            return err(RESP_ERR_INVALID_PARAMETER);
        };
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return err(RESP_ERR_INVALID_PARAMETER);
        }
        let bytes = u64::from(width) * u64::from(height) * BPP;
        if self.used.saturating_add(bytes) > self.budget {
            log::warn!(
                "virtio-gpu: resource {id} ({width}x{height}) would exceed the {} MiB budget",
                self.budget >> 20
            );
            return err(RESP_ERR_OUT_OF_MEMORY);
        }
        let mut pixels = Vec::new();
        if pixels.try_reserve_exact(bytes as usize).is_err() {
            return err(RESP_ERR_OUT_OF_MEMORY);
        }
        pixels.resize(bytes as usize, 0);
        self.used += bytes;
        self.resources.insert(
            id,
            Resource {
                width,
                height,
                format,
                pixels,
                backing: Vec::new(),
            },
        );
        ok()
    }

    fn unref(&mut self, id: u32) -> Outcome {
        let Some(resource) = self.resources.remove(&id) else {
            return err(RESP_ERR_INVALID_RESOURCE_ID);
        };
        self.used -= resource.pixels.len() as u64;
        for index in 0..self.scanouts.len() {
            if self.scanouts[index].resource == id {
                self.scanouts[index].resource = 0;
                if let Some(sink) = &self.sink {
                    sink.configure(index as u32, None);
                }
            }
        }
        ok()
    }

    fn set_scanout(&mut self, index: u32, id: u32, rect: Rect) -> Outcome {
        if index as usize >= self.scanouts.len() {
            return err(RESP_ERR_INVALID_SCANOUT_ID);
        }
        if id == 0 {
            self.scanouts[index as usize].resource = 0;
            if let Some(sink) = &self.sink {
                sink.configure(index, None);
            }
            return ok();
        }
        let Some(resource) = self.resources.get(&id) else {
            return err(RESP_ERR_INVALID_RESOURCE_ID);
        };
        if rect.width == 0 || rect.height == 0 || !rect.fits_in(resource.width, resource.height) {
            return err(RESP_ERR_INVALID_PARAMETER);
        }
        let scanout = &mut self.scanouts[index as usize];
        scanout.resource = id;
        scanout.rect = rect;
        if let Some(sink) = &self.sink {
            sink.configure(
                index,
                Some((resource.width, resource.height, resource.format)),
            );
            sink.update(index, &resource.surface(), rect);
        }
        ok()
    }

    fn flush(&mut self, id: u32, rect: Rect) -> Outcome {
        let Some(resource) = self.resources.get(&id) else {
            return err(RESP_ERR_INVALID_RESOURCE_ID);
        };
        if !rect.fits_in(resource.width, resource.height) {
            return err(RESP_ERR_INVALID_PARAMETER);
        }
        if let Some(sink) = &self.sink {
            for (index, scanout) in self.scanouts.iter().enumerate() {
                if scanout.resource != id {
                    continue;
                }
                if let Some(dirty) = rect.intersect(&scanout.rect) {
                    sink.update(index as u32, &resource.surface(), dirty);
                }
            }
        }
        ok()
    }

    fn transfer_to_host(
        &mut self,
        id: u32,
        rect: Rect,
        offset: u64,
        memory: &GuestMemoryMmap,
    ) -> Outcome {
        let Some(resource) = self.resources.get_mut(&id) else {
            return err(RESP_ERR_INVALID_RESOURCE_ID);
        };
        if !rect.fits_in(resource.width, resource.height) {
            return err(RESP_ERR_INVALID_PARAMETER);
        }
        if rect.width == 0 || rect.height == 0 {
            return ok();
        }
        if resource.backing.is_empty() {
            return err(RESP_ERR_UNSPEC);
        }
        let stride = u64::from(resource.width) * BPP;
        let row = u64::from(rect.width) * BPP;
        // The last byte read, computed without overflow: offset + stride*(h-1) + row.
        let last = u64::from(rect.height - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(offset))
            .and_then(|v| v.checked_add(row));
        if last.is_none_or(|end| end > resource.backing_len()) {
            return err(RESP_ERR_INVALID_PARAMETER);
        }
        let mut line = vec![0u8; row as usize];
        for h in 0..u64::from(rect.height) {
            let src = offset + stride * h;
            if !resource.read_backing(memory, src, &mut line) {
                return err(RESP_ERR_UNSPEC);
            }
            let dst = ((u64::from(rect.y) + h) * stride + u64::from(rect.x) * BPP) as usize;
            resource.pixels[dst..dst + row as usize].copy_from_slice(&line);
        }
        ok()
    }

    fn attach_backing(
        &mut self,
        id: u32,
        entries: Vec<(GuestAddress, u32)>,
        memory: &GuestMemoryMmap,
    ) -> Outcome {
        let Some(resource) = self.resources.get_mut(&id) else {
            return err(RESP_ERR_INVALID_RESOURCE_ID);
        };
        for (address, len) in &entries {
            let inside = address.0.checked_add(u64::from(*len)).is_some()
                && memory.get_slice(*address, *len as usize).is_ok();
            if !inside {
                log::debug!(
                    "virtio-gpu: backing {:#x}+{len} of resource {id} is outside guest memory",
                    address.0
                );
                return err(RESP_ERR_UNSPEC);
            }
        }
        resource.backing = entries;
        ok()
    }

    /// Handles one cursor-queue command (they have no response payload).
    pub fn handle_cursor(&mut self, command: &[u8]) -> Vec<u8> {
        let mut r = FieldReader::new(command);
        let Ok(header) = r.header() else {
            return Header::default().response(RESP_ERR_UNSPEC);
        };
        let parsed = (|| -> Result<(u32, u32, u32, u32, u32, u32), ShortCommand> {
            let (scanout, x, y) = (r.u32()?, r.u32()?, r.u32()?);
            r.u32()?;
            Ok((scanout, x, y, r.u32()?, r.u32()?, r.u32()?))
        })();
        let Ok((scanout, x, y, id, hot_x, hot_y)) = parsed else {
            return header.response(RESP_ERR_UNSPEC);
        };
        if scanout as usize >= self.scanouts.len() {
            return header.response(RESP_ERR_INVALID_SCANOUT_ID);
        }
        let kind = match header.kind {
            CMD_UPDATE_CURSOR => self.update_cursor(scanout, id, hot_x, hot_y),
            CMD_MOVE_CURSOR => RESP_OK_NODATA,
            _ => RESP_ERR_UNSPEC,
        };
        if kind == RESP_OK_NODATA {
            if let Some(sink) = &self.sink {
                sink.cursor_position(scanout, x, y);
            }
        }
        header.response(kind)
    }

    fn update_cursor(&mut self, scanout: u32, id: u32, hot_x: u32, hot_y: u32) -> u32 {
        if id == 0 {
            if let Some(sink) = &self.sink {
                sink.cursor_image(scanout, None);
            }
            return RESP_OK_NODATA;
        }
        let Some(resource) = self.resources.get(&id) else {
            return RESP_ERR_INVALID_RESOURCE_ID;
        };
        if resource.width > MAX_CURSOR || resource.height > MAX_CURSOR {
            return RESP_ERR_INVALID_PARAMETER;
        }
        let ([r, g, b], alpha) = resource.format.channel_offsets();
        let rgba = resource
            .pixels
            .chunks_exact(4)
            .flat_map(|p| [p[r], p[g], p[b], alpha.map_or(0xff, |a| p[a])])
            .collect();
        let image = CursorImage {
            width: resource.width,
            height: resource.height,
            hot_x: hot_x.min(resource.width.saturating_sub(1)),
            hot_y: hot_y.min(resource.height.saturating_sub(1)),
            rgba,
        };
        if let Some(sink) = &self.sink {
            sink.cursor_image(scanout, Some(&image));
        }
        RESP_OK_NODATA
    }
}
