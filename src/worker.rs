//! The background queue processor: with data_sync in `shared_preload_libraries`, one worker per
//! database named in `data_sync.worker_databases` runs `data_sync.process_queue` every
//! `data_sync.worker_interval`, draining the queue while it is busy. (Installations without
//! preloading schedule `process_queue` with pg_cron instead: see the README.)

use std::ffi::CString;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub static DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Items per `process_queue` call; a full batch means more may be due, so the worker goes on.
pub static BATCH: GucSetting<i32> = GucSetting::<i32>::new(1000);

fn preloading() -> bool {
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

pub fn register_gucs() {
    // server-start settings can only be defined while the library is preloaded
    if preloading() {
        GucRegistry::define_string_guc(
            c"data_sync.worker_databases",
            c"Databases whose queue a background worker processes (comma-separated; empty: none).",
            c"Needs data_sync in shared_preload_libraries; read at server start.",
            &DATABASES,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_int_guc(
        c"data_sync.worker_interval",
        c"How often the background worker looks for due queue items.",
        c"",
        &INTERVAL,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"data_sync.worker_batch",
        c"Queue items the background worker applies per transaction.",
        c"",
        &BATCH,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

fn databases() -> Vec<String> {
    DATABASES
        .get()
        .map(|d| d.to_string_lossy().split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// Registers one worker per configured database. Only possible while the server starts, i.e.
/// when the library is preloaded.
pub fn register_workers() {
    if !preloading() {
        return;
    }
    for (i, db) in databases().iter().enumerate() {
        BackgroundWorkerBuilder::new(&format!("data_sync queue processor for database {db}"))
            .set_type("data_sync queue processor")
            .set_library("data_sync")
            .set_function("data_sync_worker_main")
            .set_argument(Some(pg_sys::Datum::from(i)))
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn data_sync_worker_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let Some(db) = databases().into_iter().nth(arg.value()) else { return };
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    log!("data_sync: queue processor started for database \"{db}\"");
    while BackgroundWorker::wait_latch(Some(Duration::from_millis(INTERVAL.get() as u64))) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        // drain: another batch while the last one was full
        loop {
            let batch = BATCH.get();
            let processed = BackgroundWorker::transaction(|| {
                let installed = Spi::get_one::<bool>(
                    "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'data_sync')",
                );
                if installed != Ok(Some(true)) {
                    return 0;
                }
                Spi::get_one_with_args::<i64>("SELECT processed FROM data_sync.process_queue($1)", &[batch.into()])
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            });
            if processed < batch as i64 || BackgroundWorker::sigterm_received() {
                break;
            }
        }
    }
    log!("data_sync: queue processor for database \"{db}\" stopped");
}
