//! One virtio-blk request: parsing the header out of a descriptor chain, checking it against
//! the disk, running it, and writing the status byte. Every guest-controlled number (sector,
//! length, segment count, flags) is checked before it reaches the disk, and every guest buffer
//! is reached through bounds-checked accesses.

use crate::block::DiskBackend;
use crate::virtio::chain::{Chain, ChainError, Segment, SegmentCursor};
use virtio_bindings::virtio_blk as blk;
use vm_memory::{Address, Bytes, GuestMemoryMmap};

/// The unit of virtio-blk sector numbers (the spec fixes it; `virtio-bindings` does not name it).
pub const SECTOR_SIZE: u64 = 512;
/// The serial number GET_ID returns is at most this long.
pub const ID_BYTES: usize = blk::VIRTIO_BLK_ID_BYTES as usize;
/// Bytes moved between disk and guest per step, bounding the bounce buffer.
const CHUNK: usize = 1 << 20;
/// The most data one read may return: data and status byte must fit the used ring's 32-bit
/// length.
const MAX_READ_LEN: u64 = u32::MAX as u64 - 1;

/// Request types, from `virtio-bindings`.
pub mod kind {
    use virtio_bindings::virtio_blk as blk;
    /// `VIRTIO_BLK_T_IN`: read sectors into the guest's buffers.
    pub const IN: u32 = blk::VIRTIO_BLK_T_IN;
    /// `VIRTIO_BLK_T_OUT`: write the guest's buffers to sectors.
    pub const OUT: u32 = blk::VIRTIO_BLK_T_OUT;
    /// `VIRTIO_BLK_T_FLUSH`: make earlier writes durable.
    pub const FLUSH: u32 = blk::VIRTIO_BLK_T_FLUSH;
    /// `VIRTIO_BLK_T_GET_ID`: return the serial, up to 20 bytes.
    pub const GET_ID: u32 = blk::VIRTIO_BLK_T_GET_ID;
    /// `VIRTIO_BLK_T_DISCARD`: the listed sector ranges may be freed.
    pub const DISCARD: u32 = blk::VIRTIO_BLK_T_DISCARD;
    /// `VIRTIO_BLK_T_WRITE_ZEROES`: the listed sector ranges read as zero afterwards.
    pub const WRITE_ZEROES: u32 = blk::VIRTIO_BLK_T_WRITE_ZEROES;
}

/// Status codes, from `virtio-bindings` (the status is one byte).
pub mod status {
    use virtio_bindings::virtio_blk as blk;
    /// `VIRTIO_BLK_S_OK`: the request succeeded.
    pub const OK: u8 = blk::VIRTIO_BLK_S_OK as u8;
    /// `VIRTIO_BLK_S_IOERR`: the request failed, or was malformed.
    pub const IOERR: u8 = blk::VIRTIO_BLK_S_IOERR as u8;
    /// `VIRTIO_BLK_S_UNSUPP`: the request type, or a range flag, is not supported.
    pub const UNSUPP: u8 = blk::VIRTIO_BLK_S_UNSUPP as u8;
}

/// The request header every chain starts with (virtio 1.2, 5.2.6), little-endian.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RequestHeader {
    kind: u32,
    reserved: u32,
    sector: u64,
}

/// One discard or write-zeroes range, little-endian.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RangeSegment {
    sector: u64,
    num_sectors: u32,
    flags: u32,
}

const HEADER_LEN: usize = std::mem::size_of::<RequestHeader>();
const RANGE_SEGMENT_LEN: u64 = std::mem::size_of::<RangeSegment>() as u64;
const _: () = {
    assert!(HEADER_LEN == std::mem::size_of::<blk::virtio_blk_outhdr>());
    assert!(
        RANGE_SEGMENT_LEN as usize == std::mem::size_of::<blk::virtio_blk_discard_write_zeroes>()
    );
};
const RANGE_FLAG_UNMAP: u32 = blk::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;

/// What a request may do to the disk.
pub struct Limits {
    /// Most sectors in one DISCARD segment (`max_discard_sectors`).
    pub max_discard_sectors: u32,
    /// Most segments in one DISCARD request (`max_discard_seg`).
    pub max_discard_segments: u32,
    /// Most sectors in one WRITE_ZEROES segment (`max_write_zeroes_sectors`).
    pub max_write_zeroes_sectors: u32,
    /// Most segments in one WRITE_ZEROES request (`max_write_zeroes_seg`).
    pub max_write_zeroes_segments: u32,
}

/// The state a queue worker keeps between requests.
pub struct RequestContext<'a> {
    /// The image requests go to.
    pub disk: &'a dyn DiskBackend,
    /// The serial GET_ID returns, NUL-padded to 20 bytes.
    pub serial: &'a [u8; ID_BYTES],
    /// Limits on DISCARD and WRITE_ZEROES.
    pub limits: &'a Limits,
    /// Bounce buffer reused between requests (at most 1 MiB is used per step).
    pub buffer: &'a mut Vec<u8>,
}

/// Runs the request in `chain` and writes its status. Returns the bytes written into the
/// chain (data plus status). Fails only when the chain has no usable status byte.
pub fn execute(
    chain: &Chain,
    memory: &GuestMemoryMmap,
    ctx: &mut RequestContext,
) -> Result<u32, ChainError> {
    let no_status = ChainError::Malformed(chain.head);
    let Some(last) = chain.segments.last().filter(|s| s.writable && s.len > 0) else {
        log::debug!(
            "virtio-blk: chain {} has no writable status byte",
            chain.head
        );
        return Err(no_status);
    };
    let status_address = last
        .address
        .checked_add(u64::from(last.len) - 1)
        .ok_or(no_status.clone())?;
    let mut body = chain.segments.clone();
    let tail = body.len() - 1;
    if last.len == 1 {
        body.pop();
    } else {
        body[tail].len -= 1;
    }
    let (status, written) = run(&body, memory, ctx);
    if memory.write_obj(status, status_address).is_err() {
        log::debug!(
            "virtio-blk: status byte at {:#x} is outside guest memory",
            status_address.0
        );
        return Err(no_status);
    }
    Ok(written + 1)
}

/// Runs a request; returns its status and the data bytes written to the guest.
fn run(body: &[Segment], memory: &GuestMemoryMmap, ctx: &mut RequestContext) -> (u8, u32) {
    let split = body.iter().position(|s| s.writable).unwrap_or(body.len());
    let (readable, writable) = body.split_at(split);
    if writable.iter().any(|s| !s.writable) {
        log::debug!("virtio-blk: device-readable buffer after a writable one");
        return (status::IOERR, 0);
    }
    let mut input = SegmentCursor::new(readable);
    let mut header = [0u8; HEADER_LEN];
    match input.read(memory, &mut header) {
        Ok(HEADER_LEN) => {}
        Ok(_) => {
            log::debug!("virtio-blk: request header shorter than {HEADER_LEN} bytes");
            return (status::IOERR, 0);
        }
        Err(e) => {
            log::debug!("virtio-blk: request header: {e}");
            return (status::IOERR, 0);
        }
    }
    let header: RequestHeader = bytemuck::pod_read_unaligned(&header);
    let (request, sector) = (u32::from_le(header.kind), u64::from_le(header.sector));
    let output_len: u64 = writable.iter().map(|s| u64::from(s.len)).sum();
    let mut output = SegmentCursor::new(writable);

    match request {
        kind::IN => {
            if input.remaining() != 0 {
                return fail("read request carries device-readable data");
            }
            match read_sectors(sector, output_len, &mut output, memory, ctx) {
                Ok(written) => (status::OK, written),
                Err((why, written)) => {
                    log::debug!("virtio-blk: read at sector {sector}: {why}");
                    (status::IOERR, written)
                }
            }
        }
        kind::OUT => {
            if output_len != 0 {
                return fail("write request carries device-writable data");
            }
            if ctx.disk.read_only() {
                return fail("write to a read-only disk");
            }
            let len = input.remaining();
            match write_sectors(sector, len, &mut input, memory, ctx) {
                Ok(()) => (status::OK, 0),
                Err(why) => {
                    log::warn!("virtio-blk: write at sector {sector}: {why}");
                    (status::IOERR, 0)
                }
            }
        }
        kind::FLUSH => match ctx.disk.flush() {
            Ok(()) => (status::OK, 0),
            Err(e) => {
                log::warn!("virtio-blk: flush failed: {e}");
                (status::IOERR, 0)
            }
        },
        kind::GET_ID => {
            if output_len == 0 {
                return fail("GET_ID without a buffer");
            }
            let n = (output_len as usize).min(ID_BYTES);
            match output.write(memory, &ctx.serial[..n]) {
                Ok(written) => (status::OK, written as u32),
                Err(e) => fail(&format!("GET_ID buffer: {e}")),
            }
        }
        kind::DISCARD | kind::WRITE_ZEROES => {
            if ctx.disk.read_only() {
                return fail("discard or write-zeroes on a read-only disk");
            }
            ranges(request, &mut input, memory, ctx)
        }
        other => {
            log::debug!("virtio-blk: unsupported request type {other}");
            (status::UNSUPP, 0)
        }
    }
}

fn fail(why: &str) -> (u8, u32) {
    log::debug!("virtio-blk: {why}");
    (status::IOERR, 0)
}

/// The byte offset of `sector`, if `[sector, sector + len bytes)` lies on the disk.
fn disk_offset(sector: u64, len: u64, disk: &dyn DiskBackend) -> Result<u64, String> {
    let offset = sector
        .checked_mul(SECTOR_SIZE)
        .ok_or_else(|| format!("sector {sector} overflows"))?;
    let end = offset
        .checked_add(len)
        .ok_or_else(|| format!("sector {sector} + {len} bytes overflows"))?;
    if end > disk.size() {
        return Err(format!(
            "bytes {offset}..{end} are past the end of the {}-byte disk",
            disk.size()
        ));
    }
    Ok(offset)
}

fn read_sectors(
    sector: u64,
    len: u64,
    output: &mut SegmentCursor,
    memory: &GuestMemoryMmap,
    ctx: &mut RequestContext,
) -> Result<u32, (String, u32)> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err((format!("length {len} is not a whole number of sectors"), 0));
    }
    if len > MAX_READ_LEN {
        return Err((format!("length {len} is more than a request can return"), 0));
    }
    let mut offset = disk_offset(sector, len, ctx.disk).map_err(|e| (e, 0))?;
    let mut written: u32 = 0;
    let mut left = len;
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        ctx.buffer.resize(n, 0);
        ctx.disk
            .read_at(&mut ctx.buffer[..n], offset)
            .map_err(|e| (format!("host read error: {e}"), written))?;
        let done = output
            .write(memory, &ctx.buffer[..n])
            .map_err(|e| (e.to_string(), written))?;
        written = written.saturating_add(done as u32);
        offset += n as u64;
        left -= n as u64;
    }
    Ok(written)
}

fn write_sectors(
    sector: u64,
    len: u64,
    input: &mut SegmentCursor,
    memory: &GuestMemoryMmap,
    ctx: &mut RequestContext,
) -> Result<(), String> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(format!("length {len} is not a whole number of sectors"));
    }
    let mut offset = disk_offset(sector, len, ctx.disk)?;
    let mut left = len;
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        ctx.buffer.resize(n, 0);
        let got = input
            .read(memory, &mut ctx.buffer[..n])
            .map_err(|e| e.to_string())?;
        ctx.disk
            .write_at(&ctx.buffer[..got], offset)
            .map_err(|e| format!("host write error: {e}"))?;
        offset += got as u64;
        left -= got as u64;
        if got == 0 {
            break;
        }
    }
    Ok(())
}

/// DISCARD and WRITE_ZEROES: a list of {sector, sectors, flags} ranges.
fn ranges(
    request: u32,
    input: &mut SegmentCursor,
    memory: &GuestMemoryMmap,
    ctx: &mut RequestContext,
) -> (u8, u32) {
    let discard = request == kind::DISCARD;
    let (max_sectors, max_segments) = if discard {
        (
            ctx.limits.max_discard_sectors,
            ctx.limits.max_discard_segments,
        )
    } else {
        (
            ctx.limits.max_write_zeroes_sectors,
            ctx.limits.max_write_zeroes_segments,
        )
    };
    let len = input.remaining();
    if len == 0 || !len.is_multiple_of(RANGE_SEGMENT_LEN) {
        return fail("range list is not a whole number of 16-byte segments");
    }
    if len / RANGE_SEGMENT_LEN > u64::from(max_segments) {
        return fail("too many ranges in one request");
    }
    for _ in 0..len / RANGE_SEGMENT_LEN {
        let mut raw = [0u8; RANGE_SEGMENT_LEN as usize];
        if let Err(e) = input.read(memory, &mut raw) {
            return fail(&format!("range list: {e}"));
        }
        let range: RangeSegment = bytemuck::pod_read_unaligned(&raw);
        let sector = u64::from_le(range.sector);
        let sectors = u32::from_le(range.num_sectors);
        let flags = u32::from_le(range.flags);
        let unknown_flags = if discard {
            flags
        } else {
            flags & !RANGE_FLAG_UNMAP
        };
        if unknown_flags != 0 {
            log::debug!("virtio-blk: range flags {flags:#x} not supported");
            return (status::UNSUPP, 0);
        }
        if sectors > max_sectors {
            return fail("range larger than the device allows");
        }
        let bytes = u64::from(sectors) * SECTOR_SIZE;
        let offset = match disk_offset(sector, bytes, ctx.disk) {
            Ok(offset) => offset,
            Err(e) => return fail(&e),
        };
        let result = if discard {
            ctx.disk.discard(offset, bytes)
        } else {
            ctx.disk
                .write_zeroes(offset, bytes, flags & RANGE_FLAG_UNMAP != 0)
        };
        if let Err(e) = result {
            log::warn!(
                "virtio-blk: {} at sector {sector}: {e}",
                if discard { "discard" } else { "write-zeroes" }
            );
            return (status::IOERR, 0);
        }
    }
    (status::OK, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};
    use vm_memory::GuestAddress;

    /// A large disk of zeros that counts the bytes read from it.
    #[derive(Default)]
    struct CountingDisk {
        read: AtomicU64,
    }

    impl DiskBackend for CountingDisk {
        fn size(&self) -> u64 {
            16 << 30
        }
        fn read_only(&self) -> bool {
            true
        }
        fn read_at(&self, buf: &mut [u8], _offset: u64) -> io::Result<()> {
            self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
            Ok(())
        }
        fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
            Err(io::ErrorKind::PermissionDenied.into())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
        fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn write_zeroes(&self, _offset: u64, _len: u64, _may_unmap: bool) -> io::Result<()> {
            Ok(())
        }
    }

    fn segment(address: u64, len: u32, writable: bool) -> Segment {
        Segment {
            address: GuestAddress(address),
            len,
            writable,
        }
    }

    /// A read whose buffers add up to 4 GiB or more could not report its length in the used
    /// ring: the byte count saturated at u32::MAX and adding the status byte overflowed (a
    /// panic with overflow checks, a used length of 0 without). The guest's buffers may all
    /// be the same memory, so a guest with little RAM can send one. It is refused before any
    /// I/O now.
    #[test]
    fn reads_of_4_gib_or_more_are_refused_before_any_io() {
        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&kind::IN.to_le_bytes());
        memory.write_slice(&header, GuestAddress(0)).unwrap();
        let disk = CountingDisk::default();
        let limits = Limits {
            max_discard_sectors: 1,
            max_discard_segments: 1,
            max_write_zeroes_sectors: 1,
            max_write_zeroes_segments: 1,
        };
        let mut buffer = Vec::new();
        let mut ctx = RequestContext {
            disk: &disk,
            serial: &[0; ID_BYTES],
            limits: &limits,
            buffer: &mut buffer,
        };
        // 4096 writable buffers of 1 MiB, all at the same guest address: 4 GiB.
        let mut segments = vec![segment(0, 16, false)];
        segments.extend((0..4096).map(|_| segment(1 << 20, 1 << 20, true)));
        segments.push(segment(0x100, 1, true));
        let chain = Chain { head: 0, segments };
        assert_eq!(execute(&chain, &memory, &mut ctx), Ok(1));
        assert_eq!(
            memory.read_obj::<u8>(GuestAddress(0x100)).unwrap(),
            status::IOERR
        );
        assert_eq!(
            disk.read.load(Ordering::Relaxed),
            0,
            "no I/O for a refused read"
        );

        // One sector less is served (and reports every byte).
        let mut segments = vec![segment(0, 16, false)];
        segments.extend((0..4095).map(|_| segment(1 << 20, 1 << 20, true)));
        segments.push(segment(1 << 20, (1 << 20) - 512, true));
        segments.push(segment(0x100, 1, true));
        let chain = Chain { head: 0, segments };
        let len = (4u64 << 30) - 512;
        assert_eq!(execute(&chain, &memory, &mut ctx), Ok(len as u32 + 1));
        assert_eq!(
            memory.read_obj::<u8>(GuestAddress(0x100)).unwrap(),
            status::OK
        );
        assert_eq!(disk.read.load(Ordering::Relaxed), len);
    }
}
