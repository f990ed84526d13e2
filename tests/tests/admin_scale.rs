//! `infuse::admin` lists 5,000 breakers seen by 20 processes in memory linear in
//! breakers plus processes (the old `infuse status` cloned each process's map per
//! breaker: 4,000 breakers took 1.84 GB). The peak heap of the listing is measured by a
//! counting allocator (its own test binary: no other test allocates meanwhile) and
//! printed; the bound asserted is generous, and 1,000 breakers are listed too to check
//! that the cost grows linearly, not with the square.
//!
//! `cargo test -p infuse-tests --test admin_scale -- --nocapture` prints the figures.

use infuse_tests::support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use infuse::admin::{Admin, Record};
use support::redis_server::RedisServer;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Writes `breakers` records (each with one history entry, listed in the change log)
/// and `processes` announcements of 1,000 breakers each (the announcement's cap) into
/// `namespace`, as the scripts and `fleet/presence.rs` write them.
async fn populate(server: &RedisServer, namespace: &str, breakers: usize, processes: usize) {
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let service = |i: usize| format!("service-{i:05}");
    for chunk in (0..breakers).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let state = format!("infuse:{{{namespace}/{}}}:state", service(i));
            let history = format!("infuse:{{{namespace}/{}}}:history", service(i));
            let open = i % 10 == 0;
            pipe.cmd("HSET")
                .arg(&state)
                .arg(&[
                    "inc", "77", "gen", "2", "seq", "5", "fail", "0", "succ", "0",
                ])
                .arg("state")
                .arg(if open { "1" } else { "0" })
                .ignore();
            pipe.cmd("LPUSH")
                .arg(&history)
                .arg(format!(
                    "1764550000123 closed open 2 consecutive_failures {i:x}"
                ))
                .ignore();
            pipe.cmd("ZADD")
                .arg(format!("infuse:{{{namespace}}}:changes"))
                .arg(1)
                .arg(service(i))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    for p in 0..processes {
        let listed: Vec<String> = (0..1_000.min(breakers))
            .map(|k| format!("\"{}\":\"closed\"", service((p * 250 + k) % breakers)))
            .collect();
        let id = format!("{:x}", 0xabc000 + p);
        let json = format!(
            "{{\"at_ms\":1,\"id\":\"{id}\",\"name\":\"worker\",\"host\":\"box-{p}\",\"pid\":{p},\"interval_ms\":60000,\"breakers_total\":{breakers},\"breakers_omitted\":{},\"breakers\":{{{}}}}}",
            breakers.saturating_sub(1_000),
            listed.join(",")
        );
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(format!("infuse:{{{namespace}}}:process:{id}"))
            .arg(json)
            .arg("PX")
            .arg(600_000)
            .ignore();
        pipe.cmd("ZADD")
            .arg(format!("infuse:{{{namespace}}}:processes"))
            .arg(secs * 1000 + 600_000)
            .arg(&id)
            .ignore();
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
}

/// Lists `namespace`; answers the listing's peak heap (bytes above what was allocated
/// before it) and checks what it found.
async fn measure(admin: &Admin, breakers: usize, processes: usize) -> usize {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let listing = admin.breakers().await.unwrap();
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(listing.breakers.len(), breakers);
    assert_eq!(listing.processes.len(), processes);
    assert!(listing
        .breakers
        .iter()
        .all(|row| matches!(row.record, Record::Ok(_)) && row.last_transition.is_some()));
    let sightings: usize = listing.breakers.iter().map(|row| row.seen_by.len()).sum();
    assert_eq!(sightings, processes * 1_000.min(breakers));
    println!(
        "admin listing: {breakers} breakers x {processes} processes: peak heap {:.1} MB, {took:?} (debug build)",
        peak as f64 / 1e6
    );
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_breakers_and_twenty_processes_list_in_linear_memory() {
    let server = RedisServer::start();
    populate(&server, "scale-1k", 1_000, 20).await;
    populate(&server, "scale-5k", 5_000, 20).await;
    let small = Admin::connect(&support::redis_config(&server, "scale-1k"))
        .await
        .unwrap();
    let large = Admin::connect(&support::redis_config(&server, "scale-5k"))
        .await
        .unwrap();
    // Warm up (connections, script caches, lazy statics) before measuring.
    small.breakers().await.unwrap();
    let peak_1k = measure(&small, 1_000, 20).await;
    let peak_5k = measure(&large, 5_000, 20).await;
    assert!(
        peak_5k < 64 * 1024 * 1024,
        "5,000 breakers x 20 processes took {peak_5k} bytes"
    );
    // Five times the breakers, the same processes: well under 25 times the memory (the
    // square), and not more than about 5 times (linear) plus slack.
    assert!(
        peak_5k < peak_1k * 8,
        "1,000 breakers: {peak_1k} bytes; 5,000: {peak_5k} bytes"
    );
}
