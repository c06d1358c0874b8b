//! virtio-blk seen from a real guest: the test kernel boots under KVM with `--disk`, and what
//! its own serial console reports (disk size, partitions, ext4 mounts) is the test. Guest
//! userspace cannot make system calls on nested-KVM hosts (see `docs/nested-kvm.md`), so the
//! guest kernel is the test driver: it reads the partition table, mounts ext4 root filesystems
//! read-write or read-only, and SysRq over the serial line remounts and powers off. The host
//! then checks the image with e2fsprogs.
//!
//! Disks appear as virtio-blk PCI devices in `--disk` order: the first is `/dev/vda`.

use cove_tests::disk_images::{
    disk_arg, dumpe2fs_header, e2fsck_readonly, make_ext4_root, random_partitions,
    superblock_field, test_seed, write_mbr_image, Rng, SECTOR,
};
use cove_tests::{
    kvm_available, run_test_kernel, run_test_kernel_without_initrd, test_kernel, CoveProcess,
    ScratchDir,
};
use std::time::Duration;

/// Generous: a boot to init takes about a minute when the guest kernel is emulated (nested
/// KVM without hardware virtualization). This only bounds a hang.
const BOOT: Duration = Duration::from_secs(300);
/// For a step after the boot: a SysRq action, a clean exit.
const STEP: Duration = Duration::from_secs(120);

/// The size of the ext4 images (mke2fs syntax).
const EXT4_SIZE: &str = "32M";

/// Quits cove with its console escape (Ctrl-A X) and expects a clean exit.
fn quit(vm: &mut CoveProcess) {
    vm.send(b"\x01x");
    let status = vm.wait(STEP);
    let t = vm.transcript();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{t}");
    assert!(vm.log.text().contains("VM stopped"), "{t}");
}

/// Waits for a whole serial line containing `needle`, failing with the transcript.
fn line(vm: &CoveProcess, needle: &str, timeout: Duration) -> String {
    vm.serial
        .wait_for_line(needle, timeout)
        .unwrap_or_else(|| panic!("no line with {needle:?}\n{}", vm.transcript()))
}

/// `virtio_blk virtioN: [vda] 131072 512-byte logical blocks (67.1 MB/64.0 MiB)` → 131072.
/// (N is the virtio device index, which depends on what other virtio devices come first.)
fn logical_blocks(line: &str) -> Option<u64> {
    let rest = line.split("[vda] ").nth(1)?;
    let mut words = rest.split_whitespace();
    let blocks = words.next()?.parse().ok()?;
    (words.next()? == "512-byte").then_some(blocks)
}

/// ` vda: vda1 vda2 vda3` → the partition names.
fn partition_names(line: &str) -> Vec<String> {
    let rest = line.split_once(" vda:").map_or("", |(_, r)| r);
    rest.split_whitespace().map(str::to_string).collect()
}

/// A random MBR (1 to 4 primary partitions of random sizes) on a 64 MiB sparse image: the
/// guest reports the disk's size in 512-byte blocks and exactly the partitions written.
#[test]
fn guest_reads_size_and_mbr_partitions() {
    if !kvm_available() {
        return;
    }
    let seed = test_seed();
    eprintln!(
        "guest_reads_size_and_mbr_partitions: seed {seed} (COVE_TEST_SEED={seed} repeats it)"
    );
    let mut rng = Rng::new(seed);
    let size: u64 = 64 << 20;
    let partitions = random_partitions(&mut rng, size / SECTOR);
    eprintln!("partitions written: {partitions:?}");
    let dir = ScratchDir::new("blk-mbr");
    let image = dir.path("disk.img");
    write_mbr_image(&image, size, rng.next_u64() as u32, &partitions);

    let kernel = test_kernel();
    // The kernel reads the partition table before it runs init; COVE_INIT=spin only keeps the
    // guest alive (and quiet) afterwards, on every host.
    let disk = disk_arg(&image, "");
    let mut vm = run_test_kernel(
        &kernel,
        "console=ttyS0 COVE_INIT=spin",
        &["--memory", "128M", "--disk", &disk],
    );

    let capacity = line(&vm, "[vda] ", BOOT);
    assert!(capacity.contains("virtio_blk virtio"), "{capacity}");
    assert_eq!(
        logical_blocks(&capacity),
        Some(size / SECTOR),
        "seed {seed}: {capacity}"
    );

    let table = line(&vm, " vda:", STEP);
    let want: Vec<String> = (1..=partitions.len()).map(|i| format!("vda{i}")).collect();
    assert_eq!(
        partition_names(&table),
        want,
        "seed {seed}, partitions {partitions:?}: {table}\n{}",
        vm.transcript()
    );
    quit(&mut vm);
}

/// An ext4 root filesystem on a writable disk: the kernel mounts it read-write (which writes
/// the superblock: mount count and time), SysRq U remounts it read-only, SysRq O powers off.
/// The host then finds the filesystem mounted once and clean.
#[test]
fn guest_mounts_ext4_root_read_write() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let dir = ScratchDir::new("blk-ext4-rw");
    let image = dir.path("root.img");
    make_ext4_root(&image, &kernel.init, EXT4_SIZE);
    let before = dumpe2fs_header(&image);
    assert_eq!(
        superblock_field(&before, "Mount count").as_deref(),
        Some("0"),
        "{before}"
    );
    let uuid = superblock_field(&before, "Filesystem UUID").expect("a UUID");

    let disk = disk_arg(&image, "");
    let mut vm = run_test_kernel_without_initrd(
        &kernel,
        "console=ttyS0 root=/dev/vda rw sysrq_always_enabled COVE_INIT=spin",
        &["--memory", "128M", "--disk", &disk],
    );
    // EXT4-fs (vda): mounted filesystem <uuid> r/w with ordered data mode. Quota mode: disabled.
    let mounted = line(&vm, "EXT4-fs (vda): mounted filesystem", BOOT);
    assert!(
        mounted.contains(&format!("mounted filesystem {uuid} r/w")),
        "not our image, or not read-write: {mounted}"
    );
    // VFS: Mounted root (ext4 filesystem) on device 254:0.
    let root = line(&vm, "VFS: Mounted root (", STEP);
    assert!(
        root.contains("Mounted root (ext4 filesystem) on device"),
        "{root}"
    );
    assert!(
        vm.serial.wait_for("Run /sbin/init as init process", STEP),
        "init not started\n{}",
        vm.transcript()
    );
    std::thread::sleep(Duration::from_secs(3));

    vm.sysrq_until(b'u', "sysrq: Emergency Remount", 3);
    assert!(
        vm.serial.wait_for("Emergency Remount complete", STEP),
        "{}",
        vm.transcript()
    );
    // EXT4-fs (vda): re-mounted <uuid> ro.
    let remounted = format!("EXT4-fs (vda): re-mounted {uuid} ro.");
    assert!(
        vm.serial.text().contains(&remounted),
        "no {remounted:?}\n{}",
        vm.transcript()
    );
    vm.sysrq_until(b'o', "sysrq: Power Off", 3);
    let status = vm.wait(STEP);
    let t = vm.transcript();
    assert!(vm.serial.text().contains("sysrq: Power Off"), "{t}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{t}");
    assert!(vm.log.text().contains("VM powered off"), "{t}");

    let after = dumpe2fs_header(&image);
    assert_eq!(
        superblock_field(&after, "Mount count").as_deref(),
        Some("1"),
        "{after}"
    );
    let mount_time = superblock_field(&after, "Last mount time").expect("a mount time");
    assert_ne!(mount_time, "n/a", "{after}");
    assert_eq!(
        superblock_field(&after, "Filesystem state").as_deref(),
        Some("clean"),
        "{after}"
    );
    let (code, fsck) = e2fsck_readonly(&image);
    assert_eq!(
        code,
        Some(0),
        "e2fsck -fn after the guest:\n{fsck}\n{after}"
    );
}

/// A read-only disk holding an ext4 root asked for `rw`: the kernel cannot open it for
/// writing, falls back to mounting it read-only, and the image is left byte for byte as it was.
#[test]
fn guest_mounts_read_only_disk_read_only() {
    if !kvm_available() {
        return;
    }
    let kernel = test_kernel();
    let dir = ScratchDir::new("blk-ext4-ro");
    let image = dir.path("root.img");
    make_ext4_root(&image, &kernel.init, EXT4_SIZE);
    let uuid = superblock_field(&dumpe2fs_header(&image), "Filesystem UUID").expect("a UUID");
    let before = std::fs::read(&image).expect("read the image");

    let disk = disk_arg(&image, "readonly=on");
    let mut vm = run_test_kernel_without_initrd(
        &kernel,
        "console=ttyS0 root=/dev/vda rw COVE_INIT=spin",
        &["--memory", "128M", "--disk", &disk],
    );
    // VFS: Mounted root (ext4 filesystem) readonly on device 254:0.
    let root = line(&vm, "VFS: Mounted root (", BOOT);
    assert!(
        root.contains("Mounted root (ext4 filesystem) readonly"),
        "{root}\n{}",
        vm.transcript()
    );
    let serial = vm.serial.text();
    assert!(
        serial.contains(&format!("EXT4-fs (vda): mounted filesystem {uuid} ro")),
        "{}",
        vm.transcript()
    );
    assert!(
        vm.serial.wait_for("Run /sbin/init as init process", STEP),
        "init not started\n{}",
        vm.transcript()
    );
    quit(&mut vm);

    let after = std::fs::read(&image).expect("read the image");
    assert_eq!(after.len(), before.len(), "the image changed size");
    if let Some(at) = before.iter().zip(&after).position(|(a, b)| a != b) {
        panic!("the read-only image changed, first at byte {at:#x}");
    }
    let (code, fsck) = e2fsck_readonly(&image);
    assert_eq!(code, Some(0), "{fsck}");
}

#[test]
fn parses_kernel_disk_lines() {
    assert_eq!(
        logical_blocks(
            "[    1.234567] virtio_blk virtio1: [vda] 131072 512-byte logical blocks (67.1 MB/64.0 MiB)"
        ),
        Some(131072)
    );
    assert_eq!(logical_blocks("[vda] new size: 5 512-byte"), None);
    assert_eq!(
        partition_names("[    1.300000]  vda: vda1 vda2 vda3"),
        ["vda1", "vda2", "vda3"]
    );
    assert!(partition_names("[    1.300000]  vda:").is_empty());
}
