//! Disk images for guest tests, made on the host, and the host's checks on them afterwards.
//!
//! - Raw images with an MBR partition table, written here byte by byte (no external tools).
//! - ext4 images made by `mkfs.ext4 -d` (e2fsprogs), with a root tree a guest kernel can boot
//!   from: `/sbin/init` and an empty `/dev` for devtmpfs.
//! - `dumpe2fs -h`, `e2fsck -fn` and `sfdisk -d` to look at images from the host.
//!
//! The tools come from `scripts/setup.sh` (e2fsprogs, fdisk).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes per sector, for MBR addresses and for virtio-blk capacities.
pub const SECTOR: u64 = 512;

/// The MBR partition type of a Linux filesystem.
pub const LINUX_PARTITION_TYPE: u8 = 0x83;

/// One primary MBR partition, in 512-byte sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub start: u32,
    pub sectors: u32,
    pub kind: u8,
}

/// CHS address of `lba` in the usual 255-head, 63-sector geometry, or the "beyond CHS" marker
/// (1023/254/63) past cylinder 1023. Linux ignores these; other readers check them.
fn chs(lba: u32) -> [u8; 3] {
    const HEADS: u32 = 255;
    const SECTORS: u32 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        (sector as u8) | (((cylinder >> 8) as u8) << 6),
        cylinder as u8,
    ]
}

/// An MBR (sector 0) with `partitions` in slots 1, 2, ... (at most four), the given disk
/// signature, no boot code, and the 0x55AA signature.
pub fn mbr(disk_signature: u32, partitions: &[Partition]) -> [u8; 512] {
    assert!(
        partitions.len() <= 4,
        "an MBR holds four primary partitions"
    );
    let mut sector = [0u8; 512];
    sector[0x1b8..0x1bc].copy_from_slice(&disk_signature.to_le_bytes());
    for (i, p) in partitions.iter().enumerate() {
        assert!(p.sectors > 0, "empty partition {p:?}");
        let last = p
            .start
            .checked_add(p.sectors - 1)
            .expect("partition beyond 2 TiB");
        let entry = &mut sector[0x1be + 16 * i..0x1be + 16 * (i + 1)];
        entry[0] = 0x00; // not bootable
        entry[1..4].copy_from_slice(&chs(p.start));
        entry[4] = p.kind;
        entry[5..8].copy_from_slice(&chs(last));
        entry[8..12].copy_from_slice(&p.start.to_le_bytes());
        entry[12..16].copy_from_slice(&p.sectors.to_le_bytes());
    }
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// Writes a sparse raw image of `size` bytes at `path` whose first sector is [`mbr`].
pub fn write_mbr_image(path: &Path, size: u64, disk_signature: u32, partitions: &[Partition]) {
    assert!(
        size.is_multiple_of(SECTOR),
        "image size {size} is not whole sectors"
    );
    for p in partitions {
        assert!(
            u64::from(p.start) + u64::from(p.sectors) <= size / SECTOR,
            "partition {p:?} does not fit in {size} bytes"
        );
    }
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.set_len(size).expect("size the image");
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(&mbr(disk_signature, partitions))
        .expect("write the MBR");
    file.sync_all().expect("sync the image");
}

/// A `--disk` value for `path` with `options` (e.g. `"readonly=on"`, or `""` for none): commas
/// in the path are doubled, as the syntax wants.
pub fn disk_arg(path: &Path, options: &str) -> String {
    let path = path
        .to_str()
        .expect("test paths are UTF-8")
        .replace(',', ",,");
    if options.is_empty() {
        path
    } else {
        format!("{path},{options}")
    }
}

/// A small deterministic generator (SplitMix64), so a seed reproduces a layout.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform enough in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A seed for randomized tests: `COVE_TEST_SEED` if set (to reproduce a failure), else one
/// taken from the clock and the process id. Tests print it.
pub fn test_seed() -> u64 {
    if let Ok(s) = std::env::var("COVE_TEST_SEED") {
        return s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("COVE_TEST_SEED={s:?} is not a number"));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// 1 to 4 Linux partitions of random sizes and gaps on a disk of `disk_sectors` sectors. The
/// disk after its first MiB is cut into equal slots, one per partition; each partition lies
/// at a random place inside its slot, so none overlap and all fit.
pub fn random_partitions(rng: &mut Rng, disk_sectors: u64) -> Vec<Partition> {
    const FIRST: u64 = 2048; // the usual 1 MiB alignment of the first partition
    let count = rng.range(1, 4);
    let usable = disk_sectors
        .checked_sub(FIRST)
        .expect("disk smaller than 1 MiB");
    let slot = usable / count;
    assert!(slot >= 2, "disk too small for {count} partitions");
    (0..count)
        .map(|i| {
            let slot_start = FIRST + i * slot;
            let sectors = rng.range(1, slot);
            let offset = rng.range(0, slot - sectors);
            Partition {
                start: u32::try_from(slot_start + offset).expect("start beyond 2 TiB"),
                sectors: u32::try_from(sectors).expect("partition beyond 2 TiB"),
                kind: LINUX_PARTITION_TYPE,
            }
        })
        .collect()
}

/// Finds a system tool on `PATH` or in the sbin directories (which a non-root `PATH` may lack).
pub fn system_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found; scripts/setup.sh installs it"))
}

/// Runs `tool args`, returning its exit code and stdout + stderr.
fn run_tool(tool: &str, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = Command::new(system_tool(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// `sfdisk -d image`: the partition table as util-linux reads it.
pub fn sfdisk_dump(image: &Path) -> String {
    let (code, text) = run_tool("sfdisk", &["-d".as_ref(), image.as_os_str()]);
    assert_eq!(
        code,
        Some(0),
        "sfdisk -d {} failed:\n{text}",
        image.display()
    );
    text
}

/// The partitions in `sfdisk -d` output (`img1 : start=2048, size=20480, type=83`).
pub fn parse_sfdisk_dump(dump: &str) -> Vec<Partition> {
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = line.split(&format!("{key}=")).nth(1)?;
        Some(rest.split(',').next()?.trim().to_string())
    };
    dump.lines()
        .filter(|l| l.contains(" : ") && l.contains("start="))
        .map(|l| Partition {
            start: field(l, "start").and_then(|v| v.parse().ok()).expect(l),
            sectors: field(l, "size").and_then(|v| v.parse().ok()).expect(l),
            kind: field(l, "type")
                .and_then(|v| u8::from_str_radix(&v, 16).ok())
                .expect(l),
        })
        .collect()
}

/// A root tree a guest kernel can boot from with `root=/dev/vda`: `/sbin/init` (a copy of
/// `init`, mode 755) and an empty `/dev`, where the kernel mounts devtmpfs.
pub fn make_root_tree(dir: &Path, init: &Path) {
    assert!(
        init.is_file(),
        "init binary {} is missing (kernel/build-test-kernel.sh writes it next to the initramfs; run it again)",
        init.display()
    );
    std::fs::create_dir_all(dir.join("sbin")).unwrap();
    std::fs::create_dir_all(dir.join("dev")).unwrap();
    let target = dir.join("sbin/init");
    std::fs::copy(init, &target).expect("copy init");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `mkfs.ext4 -q -F -d root image size`: an ext4 image of `size` (mke2fs syntax, e.g. `32M`)
/// holding the tree at `root`.
pub fn make_ext4(image: &Path, root: &Path, size: &str) {
    let (code, text) = run_tool(
        "mkfs.ext4",
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-d".as_ref(),
            root.as_os_str(),
            image.as_os_str(),
            size.as_ref(),
        ],
    );
    assert_eq!(
        code,
        Some(0),
        "mkfs.ext4 {} failed:\n{text}",
        image.display()
    );
}

/// An ext4 image of `size` at `image` that boots `init` as `/sbin/init` (see
/// [`make_root_tree`]). The tree is staged next to the image and removed.
pub fn make_ext4_root(image: &Path, init: &Path, size: &str) {
    let mut staging = image.as_os_str().to_owned();
    staging.push(".root");
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_dir_all(&staging);
    make_root_tree(&staging, init);
    make_ext4(image, &staging, size);
    std::fs::remove_dir_all(&staging).expect("remove the staging tree");
}

/// `dumpe2fs -h image`: the superblock, as text.
pub fn dumpe2fs_header(image: &Path) -> String {
    let (code, text) = run_tool("dumpe2fs", &["-h".as_ref(), image.as_os_str()]);
    assert_eq!(
        code,
        Some(0),
        "dumpe2fs -h {} failed:\n{text}",
        image.display()
    );
    text
}

/// The value of `name:` in `dumpe2fs -h` output (`Mount count:`, `Filesystem UUID:`), trimmed.
pub fn superblock_field(header: &str, name: &str) -> Option<String> {
    header.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_string())
    })
}

/// `e2fsck -fn image`: a forced, read-only check. Returns its exit code (0: clean) and output.
pub fn e2fsck_readonly(image: &Path) -> (Option<i32>, String) {
    run_tool("e2fsck", &["-fn".as_ref(), image.as_os_str()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScratchDir;

    #[test]
    fn disk_args_escape_commas() {
        assert_eq!(disk_arg(Path::new("/t/a.img"), ""), "/t/a.img");
        assert_eq!(
            disk_arg(Path::new("/t/a,b.img"), "readonly=on"),
            "/t/a,,b.img,readonly=on"
        );
    }

    #[test]
    fn chs_addresses() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(2048), [32, 33, 0]);
        // Cylinder 1023 still fits, with its high bits in the sector byte.
        let lba = 1023 * 255 * 63;
        assert_eq!(chs(lba), [0, 1 | 0xc0, 0xff]);
        assert_eq!(chs(1024 * 255 * 63), [0xfe, 0xff, 0xff]);
    }

    #[test]
    fn mbr_layout() {
        let p = Partition {
            start: 2048,
            sectors: 4096,
            kind: LINUX_PARTITION_TYPE,
        };
        let s = mbr(0x1234_5678, &[p]);
        assert_eq!(&s[0x1b8..0x1bc], &[0x78, 0x56, 0x34, 0x12]);
        // Status, CHS 0/32/33 (LBA 2048), type, CHS 0/97/33 (LBA 6143), LBA 2048, 4096 sectors.
        assert_eq!(
            &s[0x1be..0x1ce],
            &[0, 32, 33, 0, 0x83, 97, 33, 0, 0, 8, 0, 0, 0, 16, 0, 0]
        );
        assert!(s[0x1ce..0x1fe].iter().all(|&b| b == 0));
        assert_eq!(&s[510..], &[0x55, 0xaa]);
    }

    #[test]
    fn random_partitions_fit_and_do_not_overlap() {
        let disk = 64 << 20 >> 9;
        let mut counts = [0; 5];
        for seed in 0..500 {
            let parts = random_partitions(&mut Rng::new(seed), disk);
            counts[parts.len()] += 1;
            let mut end = 2048u64;
            for p in &parts {
                assert!(u64::from(p.start) >= end, "seed {seed}: {parts:?}");
                assert!(p.sectors > 0);
                end = u64::from(p.start) + u64::from(p.sectors);
            }
            assert!(end <= disk, "seed {seed}: {parts:?}");
        }
        assert_eq!(counts[0], 0);
        assert!(counts[1..].iter().all(|&n| n > 50), "{counts:?}");
    }

    /// What util-linux reads from our MBR is what we wrote.
    #[test]
    fn sfdisk_reads_the_mbr_we_write() {
        let dir = ScratchDir::new("mbr-sfdisk");
        let image = dir.path("disk.img");
        let size = 64u64 << 20;
        let seed = test_seed();
        for round in 0..8 {
            let mut rng = Rng::new(seed.wrapping_add(round));
            let parts = random_partitions(&mut rng, size / SECTOR);
            let signature = rng.next_u64() as u32;
            write_mbr_image(&image, size, signature, &parts);
            assert_eq!(std::fs::metadata(&image).unwrap().len(), size);
            let dump = sfdisk_dump(&image);
            assert!(dump.contains("label: dos"), "{dump}");
            assert!(
                dump.contains(&format!("label-id: 0x{signature:08x}")),
                "seed {seed}+{round}:\n{dump}"
            );
            assert_eq!(
                parse_sfdisk_dump(&dump),
                parts,
                "seed {seed}+{round}:\n{dump}"
            );
        }
    }

    /// mkfs.ext4 makes an image e2fsck accepts, never mounted, holding /sbin/init and /dev.
    #[test]
    fn ext4_root_image_is_clean() {
        let dir = ScratchDir::new("ext4-root");
        let init = dir.path("fake-init");
        std::fs::write(&init, b"\x7fELF not really").unwrap();
        let image = dir.path("root.img");
        make_ext4_root(&image, &init, "32M");
        assert_eq!(std::fs::metadata(&image).unwrap().len(), 32 << 20);
        assert!(
            !dir.path("root.img.root").exists(),
            "staging tree left behind"
        );

        let header = dumpe2fs_header(&image);
        assert_eq!(
            superblock_field(&header, "Mount count").as_deref(),
            Some("0")
        );
        assert_eq!(
            superblock_field(&header, "Last mount time").as_deref(),
            Some("n/a")
        );
        assert!(superblock_field(&header, "Filesystem UUID").is_some_and(|u| u.len() == 36));
        let (code, text) = e2fsck_readonly(&image);
        assert_eq!(code, Some(0), "{text}");

        // The files are there: debugfs lists them (read-only).
        let (code, listing) = run_tool(
            "debugfs",
            &["-R".as_ref(), "ls -l /sbin".as_ref(), image.as_os_str()],
        );
        assert_eq!(code, Some(0), "{listing}");
        assert!(listing.contains("init"), "{listing}");
        assert!(listing.contains("100755"), "{listing}");
        let (_, listing) = run_tool(
            "debugfs",
            &["-R".as_ref(), "ls /".as_ref(), image.as_os_str()],
        );
        assert!(listing.contains("dev"), "{listing}");
    }
}
