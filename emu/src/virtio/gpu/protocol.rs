//! virtio-gpu wire format: command and response codes (from `virtio-bindings`), the control
//! header, and little-endian readers and writers for the command structures. Parsing never
//! trusts a length: a short command is an error, not a panic.

use crate::scanout::{PixelFormat, Rect};
use virtio_bindings::virtio_gpu as bindings;

/// `VIRTIO_GPU_CMD_GET_DISPLAY_INFO`: the scanouts' sizes and whether they are enabled.
pub const CMD_GET_DISPLAY_INFO: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_DISPLAY_INFO;
/// `VIRTIO_GPU_CMD_RESOURCE_CREATE_2D`: a host resource of a format and size.
pub const CMD_RESOURCE_CREATE_2D: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_CREATE_2D;
/// `VIRTIO_GPU_CMD_RESOURCE_UNREF`: destroy a resource.
pub const CMD_RESOURCE_UNREF: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_UNREF;
/// `VIRTIO_GPU_CMD_SET_SCANOUT`: show a rectangle of a resource on a scanout (resource 0: off).
pub const CMD_SET_SCANOUT: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_SET_SCANOUT;
/// `VIRTIO_GPU_CMD_RESOURCE_FLUSH`: a rectangle of a resource changed; update its scanouts.
pub const CMD_RESOURCE_FLUSH: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_FLUSH;
/// `VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D`: copy a rectangle from guest backing to the host.
pub const CMD_TRANSFER_TO_HOST_2D: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D;
/// `VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING`: give a resource its guest memory pages.
pub const CMD_RESOURCE_ATTACH_BACKING: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING;
/// `VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING`: take a resource's guest memory back.
pub const CMD_RESOURCE_DETACH_BACKING: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING;
/// `VIRTIO_GPU_CMD_GET_EDID`: the EDID blob of a scanout (needs [`F_EDID`]).
pub const CMD_GET_EDID: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_GET_EDID;
/// `VIRTIO_GPU_CMD_UPDATE_CURSOR` (cursor queue): new cursor image and position.
pub const CMD_UPDATE_CURSOR: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_UPDATE_CURSOR;
/// `VIRTIO_GPU_CMD_MOVE_CURSOR` (cursor queue): new cursor position only.
pub const CMD_MOVE_CURSOR: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_CMD_MOVE_CURSOR;

/// `VIRTIO_GPU_RESP_OK_NODATA`: success, header only.
pub const RESP_OK_NODATA: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_NODATA;
/// `VIRTIO_GPU_RESP_OK_DISPLAY_INFO`: success, with `virtio_gpu_resp_display_info`.
pub const RESP_OK_DISPLAY_INFO: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
/// `VIRTIO_GPU_RESP_OK_EDID`: success, with `virtio_gpu_resp_edid`.
pub const RESP_OK_EDID: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_OK_EDID;
/// `VIRTIO_GPU_RESP_ERR_UNSPEC`: failure of an unknown or malformed command.
pub const RESP_ERR_UNSPEC: u32 = bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_UNSPEC;
/// `VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY`: the resource budget or host memory is exhausted.
pub const RESP_ERR_OUT_OF_MEMORY: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
/// `VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID`: no such scanout.
pub const RESP_ERR_INVALID_SCANOUT_ID: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
/// `VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID`: no such resource, or the id is already taken.
pub const RESP_ERR_INVALID_RESOURCE_ID: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
/// `VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER`: a rectangle, format or size is out of range.
pub const RESP_ERR_INVALID_PARAMETER: u32 =
    bindings::virtio_gpu_ctrl_type_VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;

/// `VIRTIO_GPU_FLAG_FENCE` in [`Header::flags`]: the response must echo the fence.
pub const FLAG_FENCE: u32 = bindings::VIRTIO_GPU_FLAG_FENCE;
/// Feature bit `VIRTIO_GPU_F_EDID`: the device answers [`CMD_GET_EDID`].
pub const F_EDID: u64 = 1 << bindings::VIRTIO_GPU_F_EDID;
/// `VIRTIO_GPU_EVENT_DISPLAY` in `events_read`: the display configuration changed.
pub const EVENT_DISPLAY: u32 = bindings::VIRTIO_GPU_EVENT_DISPLAY;
/// The most scanouts virtio-gpu describes (16).
pub const MAX_SCANOUTS: usize = bindings::VIRTIO_GPU_MAX_SCANOUTS as usize;

/// Size of the control header every command and response starts with.
pub const HEADER_LEN: usize = 24;

/// The pixel format a virtio-gpu format code names, if Cove supports it.
pub fn pixel_format(code: u32) -> Option<PixelFormat> {
    Some(match code {
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM => PixelFormat::Bgra,
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM => PixelFormat::Bgrx,
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM => PixelFormat::Argb,
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM => PixelFormat::Xrgb,
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM => PixelFormat::Rgba,
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM => PixelFormat::Xbgr,
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM => PixelFormat::Abgr,
        bindings::virtio_gpu_formats_VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM => PixelFormat::Rgbx,
        _ => return None,
    })
}

/// The control header of a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Command or response type (`type`): a `CMD_*` or `RESP_*` code.
    pub kind: u32,
    /// `flags`: [`FLAG_FENCE`] asks for a fenced response.
    pub flags: u32,
    /// `fence_id`, echoed in the response when fenced.
    pub fence_id: u64,
    /// `ctx_id`, the 3D context; 0 for 2D commands, echoed.
    pub ctx_id: u32,
    /// `ring_idx`, echoed in the response.
    pub ring_idx: u8,
}

impl Header {
    /// The header of the response to this command: fence and context echoed.
    pub fn response(&self, kind: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(self.flags & FLAG_FENCE).to_le_bytes());
        out.extend_from_slice(&self.fence_id.to_le_bytes());
        out.extend_from_slice(&self.ctx_id.to_le_bytes());
        out.extend_from_slice(&[self.ring_idx, 0, 0, 0]);
        out
    }
}

/// A command too short for what its type says.
#[derive(Debug, PartialEq, Eq)]
pub struct ShortCommand;

/// Reads little-endian fields from a command in order.
pub struct FieldReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> FieldReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// The next 4 bytes as a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, ShortCommand> {
        let raw = self.take(4)?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
    }

    /// The next 8 bytes as a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, ShortCommand> {
        let low = u64::from(self.u32()?);
        let high = u64::from(self.u32()?);
        Ok(low | (high << 32))
    }

    /// The next 16 bytes as a `virtio_gpu_rect`: x, y, width, height.
    pub fn rect(&mut self) -> Result<Rect, ShortCommand> {
        Ok(Rect::new(
            self.u32()?,
            self.u32()?,
            self.u32()?,
            self.u32()?,
        ))
    }

    /// The next 24 bytes as a control header.
    pub fn header(&mut self) -> Result<Header, ShortCommand> {
        let kind = self.u32()?;
        let flags = self.u32()?;
        let fence_id = self.u64()?;
        let ctx_id = self.u32()?;
        let ring_idx = self.take(4)?[0];
        Ok(Header {
            kind,
            flags,
            fence_id,
            ctx_id,
            ring_idx,
        })
    }

    /// Bytes left after what was read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ShortCommand> {
        let end = self.at.checked_add(n).ok_or(ShortCommand)?;
        let slice = self.bytes.get(self.at..end).ok_or(ShortCommand)?;
        self.at = end;
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_short_commands() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&CMD_SET_SCANOUT.to_le_bytes());
        raw.extend_from_slice(&FLAG_FENCE.to_le_bytes());
        raw.extend_from_slice(&77u64.to_le_bytes());
        raw.extend_from_slice(&5u32.to_le_bytes());
        raw.extend_from_slice(&[2, 0, 0, 0]);
        let mut reader = FieldReader::new(&raw);
        let header = reader.header().unwrap();
        assert_eq!(header.kind, CMD_SET_SCANOUT);
        assert_eq!(header.fence_id, 77);
        let response = header.response(RESP_OK_NODATA);
        assert_eq!(response.len(), HEADER_LEN);
        assert_eq!(&response[4..16], &raw[4..16]);
        assert_eq!(reader.u32(), Err(ShortCommand));
        assert!(FieldReader::new(&raw[..10]).header().is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(pixel_format(1), Some(PixelFormat::Bgra));
        assert_eq!(pixel_format(134), Some(PixelFormat::Rgbx));
        assert_eq!(pixel_format(0), None);
        assert_eq!(pixel_format(999), None);
    }
}
