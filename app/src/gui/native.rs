//! The desktop app's own window: eframe opened on the library, the VM named by `--open`
//! started on the first frame, the window title kept up to date, and closing held back while
//! VMs run.

use super::validation::HostLimits;
use super::CoveApp;
use crate::library::Library;
use crate::settings::Settings;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

struct GuiApp {
    app: CoveApp,
    /// The window title last set.
    title: String,
    started: Instant,
    first_frame: bool,
    open: Option<String>,
}

impl eframe::App for GuiApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if !self.first_frame {
            self.first_frame = true;
            log::info!(
                "GUI: first frame after {} ms",
                self.started.elapsed().as_millis()
            );
            if let Some(name) = self.open.take() {
                match self.app.library.find(&name) {
                    Ok(entry) => self.app.start(&entry, &ctx),
                    Err(e) => self.app.warn(e.to_string(), super::message::About::Nothing),
                }
            }
        }
        if ctx.input(|i| i.viewport().close_requested()) && !self.app.may_close() {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
        self.app.ui(ui);
        let title = self.app.window_title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }
}

/// Opens the app window on the library in `data_dir`, starting the VM `open` if given.
pub fn run(data_dir: Option<&Path>, open: Option<&str>) -> ExitCode {
    let library = match Library::open(data_dir) {
        Ok(library) => {
            crate::library::trash::purge_all(library.root());
            library
        }
        Err(e) => {
            eprintln!("cove: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Cove")
            .with_app_id("cove")
            .with_inner_size([1100.0, 800.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    let started = Instant::now();
    let open = open.map(str::to_string);
    let settings_path = Settings::path(data_dir);
    let result = eframe::run_native(
        "cove",
        options,
        Box::new(move |cc| {
            let mut app = CoveApp::new(
                library,
                cc.wgpu_render_state.clone(),
                HostLimits::detect(),
                settings_path,
            );
            app.watch_library(&cc.egui_ctx);
            Ok(Box::new(GuiApp {
                title: "Cove".into(),
                app,
                started,
                first_frame: false,
                open,
            }))
        }),
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cove: cannot open the app window: {e}");
            ExitCode::FAILURE
        }
    }
}
