//! The desktop app under Xvfb: `cove --open NAME` starts a library VM in a VM process of its
//! own, a screenshot of the app window shows the guest's console (fbcon on virtio-gpu, drawn
//! into the shared memory the app maps) in its tab, and Alt+SysRq+O typed into the tab reaches
//! the guest through the link: the guest powers off.

use cove_tests::x11::Xvfb;
use cove_tests::{cove_binary, create_test_kernel_vm, kvm_available, CoveProcess, ScratchDir};
use std::process::Command;
use std::time::{Duration, Instant};

/// Lines of console text (16-pixel rows with many lit pixels) between `top` and `bottom`.
fn text_rows(width: u32, rgb: &[u8], top: u32, bottom: u32) -> usize {
    (top / 16..bottom / 16)
        .filter(|line| {
            let lit = (line * 16..line * 16 + 16)
                .flat_map(|y| (0..width).map(move |x| ((y * width + x) * 3) as usize))
                .filter(|&i| rgb[i] as u32 + rgb[i + 1] as u32 + rgb[i + 2] as u32 > 300)
                .count();
            lit > 40
        })
        .count()
}

#[test]
fn a_library_vm_shows_its_console_in_the_app() {
    if !kvm_available() {
        return;
    }
    let scratch = ScratchDir::new("app-window");
    let data = scratch.path("vms").display().to_string();
    create_test_kernel_vm(
        &data,
        "guest",
        "console=tty0 console=ttyS0 COVE_INIT=spin sysrq_always_enabled",
        &["--display"],
    );

    let x = Xvfb::start();
    let mut command = Command::new(cove_binary());
    command.env("DISPLAY", &x.display);
    let app = CoveProcess::spawn_command(command, &["--data-dir", &data, "--open", "guest"]);
    let window = x
        .find_window("Cove", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no app window\n{}", app.transcript()));
    // The console appears once the guest's fbcon has drawn it (a minute or more here, where the
    // guest kernel is emulated).
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut rows = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(5));
        let (width, height, rgb) = x.screenshot();
        // The display area: below the app's and the VM tab's toolbars, above the status bar.
        rows = text_rows(width, &rgb, 80, height.min(720));
        if rows >= 10 {
            break;
        }
    }
    assert!(
        rows >= 10,
        "the app shows only {rows} console lines\n{}",
        app.transcript()
    );
    assert!(
        app.log.text().contains("GUI: first frame after"),
        "{}",
        app.transcript()
    );

    // The keyboard, through the link to the VM process: Alt+SysRq+O powers the guest off.
    x.xdotool(&["windowfocus", "--sync", &window]);
    x.xdotool(&["mousemove", "--window", &window, "500", "400", "click", "1"]);
    std::thread::sleep(Duration::from_millis(500));
    x.xdotool(&[
        "keydown", "Alt_L", "keydown", "Print", "key", "o", "keyup", "Print", "keyup", "Alt_L",
    ]);
    let log = scratch.path("vms").join("guest").join(".cove-vm.log");
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("guest: powered off") {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        text.contains("guest: powered off"),
        "Alt+SysRq+O typed into the app did not reach the guest\n{text}\n{}",
        app.transcript()
    );
    drop(app);
}
