//! The guest's display in a window, under Xvfb: the test kernel's console (fbcon on
//! virtio-gpu) shows in the window and in a QMP screendump, and a key combination typed into
//! the window reaches the guest kernel (Alt+SysRq+H makes it print its SysRq help).

use cove_tests::x11::Xvfb;
use cove_tests::{cove_binary, kernel_image, kvm_available, test_kernel, CoveProcess, ScratchDir};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BOOT: Duration = Duration::from_secs(900);

fn qmp(socket: &Path, request: Value) -> Value {
    let stream = UnixStream::connect(socket).expect("connect QMP");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    for message in [json!({"execute": "qmp_capabilities"}), request] {
        writer.write_all(format!("{message}\n").as_bytes()).unwrap();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let reply: Value = serde_json::from_str(&line).unwrap();
            if reply.get("event").is_none() {
                if message["execute"] != "qmp_capabilities" {
                    return reply;
                }
                break;
            }
        }
    }
    unreachable!()
}

/// Pixels clearly brighter than the console's black background.
fn bright(rgb: [u8; 3]) -> bool {
    rgb.iter().map(|&c| u32::from(c)).sum::<u32>() > 300
}

/// Rows (of 16-pixel text lines) with console text in them, and the bright fraction.
fn text_rows(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> (usize, f64) {
    let mut rows = 0;
    let mut lit = 0u64;
    for line in 0..height / 16 {
        let mut in_line = 0;
        for y in line * 16..line * 16 + 16 {
            for x in 0..width {
                if bright(pixel(x, y)) {
                    in_line += 1;
                }
            }
        }
        lit += in_line;
        if in_line > 40 {
            rows += 1;
        }
    }
    (rows, lit as f64 / (f64::from(width) * f64::from(height)))
}

#[test]
fn guest_console_and_keyboard_in_a_window() {
    if !kvm_available() {
        return;
    }
    let x = Xvfb::start();
    let scratch = ScratchDir::new("window");
    let socket = scratch.path("qmp.sock");
    let kernel = test_kernel();
    let image = kernel_image(&kernel).to_string_lossy().into_owned();
    let initrd = kernel.initramfs.to_string_lossy().into_owned();
    let qmp_arg = format!("unix:{}", socket.display());
    let mut command = Command::new(cove_binary());
    command.env("DISPLAY", &x.display);
    let mut vm = CoveProcess::spawn_command(
        command,
        &[
            "run",
            "--kernel",
            &image,
            "--initrd",
            &initrd,
            "--append",
            "console=tty0 console=ttyS0 COVE_INIT=spin sysrq_always_enabled",
            "--memory",
            "256M",
            "--no-reboot",
            "--display",
            "window",
            "--qmp",
            &qmp_arg,
        ],
    );
    let window = x
        .find_window("cove-vm", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no window\n{}", vm.transcript()));
    assert!(
        vm.serial.wait_for("Run /init as init process", BOOT),
        "guest did not boot\n{}",
        vm.transcript()
    );
    assert!(vm
        .serial
        .text()
        .contains("fb0: virtio_gpudrmfb frame buffer device"));
    // fbcon draws the last lines a little after the serial console.
    std::thread::sleep(Duration::from_secs(5));

    // The screen, through QMP screendump.
    let shot = scratch.path("screen.png");
    let reply = qmp(
        &socket,
        json!({"execute": "screendump", "arguments": {"filename": shot.display().to_string(), "format": "png"}}),
    );
    assert_eq!(reply, json!({"return": {}}), "{}", vm.transcript());
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width, info.height);
    assert!(w >= 640 && h >= 480, "screen {w}x{h}");
    let (rows, fraction) = text_rows(w, h, |x, y| {
        let i = ((y * w + x) * 4) as usize;
        [buf[i], buf[i + 1], buf[i + 2]]
    });
    assert!(rows >= 10, "only {rows} text lines on the guest screen");
    assert!(
        fraction > 0.005 && fraction < 0.5,
        "{fraction} of the screen is lit: not console text"
    );

    // A FIFO is refused at once (it never blocks the client), and a symlink is not followed.
    let fifo = scratch.path("screen.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let reply = qmp(
        &socket,
        json!({"execute": "screendump", "arguments": {"filename": fifo.display().to_string()}}),
    );
    assert_eq!(reply["error"]["class"], "GenericError", "{reply}");
    assert!(reply["error"]["desc"]
        .as_str()
        .unwrap()
        .contains("not a regular file"));
    let target = scratch.path("target");
    std::fs::write(&target, b"keep").unwrap();
    let link = scratch.path("screen-link.png");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let reply = qmp(
        &socket,
        json!({"execute": "screendump", "arguments": {"filename": link.display().to_string()}}),
    );
    assert_eq!(reply["error"]["class"], "GenericError", "{reply}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");

    // The same console, in the window on the X screen.
    let (sw, sh, rgb) = x.screenshot();
    let (window_rows, _) = text_rows(sw, sh, |x, y| {
        let i = ((y * sw + x) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    });
    assert!(
        window_rows >= 10,
        "the window shows only {window_rows} text lines"
    );

    // The keyboard: Alt+SysRq+H typed into the window.
    x.xdotool(&["windowfocus", "--sync", &window]);
    x.xdotool(&["mousemove", "--window", &window, "400", "300", "click", "1"]);
    std::thread::sleep(Duration::from_millis(500));
    x.xdotool(&[
        "keydown", "Alt_L", "keydown", "Print", "key", "h", "keyup", "Print", "keyup", "Alt_L",
    ]);
    assert!(
        vm.serial.wait_for("sysrq: HELP", Duration::from_secs(120)),
        "the guest kernel did not see Alt+SysRq+H\n{}",
        vm.transcript()
    );

    assert_eq!(
        qmp(&socket, json!({"execute": "quit"})),
        json!({"return": {}})
    );
    let exit = vm.wait(Duration::from_secs(60));
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{}", vm.transcript());
}
