//! The results as Markdown tables (what BENCHMARKS.md holds). A section
//! left out with `--only` is left out of the tables too.

use std::fmt::Write as _;

use serde_json::Value;

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => v.to_string(),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn rows(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

pub fn tables(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    let _ = writeln!(
        s,
        "Machine: {} cores, {}, Linux {}",
        m["cores"],
        text(&m["cpu"]),
        text(&m["kernel"])
    );
    if !r["latency"].is_null() {
        latency(&mut s, &r["latency"]);
    }
    if !r["completeness"].is_null() {
        completeness(&mut s, &r["completeness"]);
    }
    if !r["hot_path"].is_null() {
        hot_path(&mut s, &r["hot_path"]);
    }
    if !r["storm"].is_null() {
        storm(&mut s, &r["storm"]);
    }
    if !r["flood"].is_null() {
        flood(&mut s, &r["flood"]);
    }
    if !r["tui"].is_null() {
        tui(&mut s, &r["tui"]);
    }
    if !r["udp"].is_null() {
        udp(&mut s, &r["udp"]);
    }
    if !r["exposure"].is_null() {
        exposure(&mut s, &r["exposure"]);
    }
    if !r["context"].is_null() {
        context(&mut s, &r["context"]);
    }
    if !r["journal"].is_null() {
        journal(&mut s, &r["journal"]);
    }
    if !r["scan"].is_null() {
        scan(&mut s, &r["scan"]);
    }
    if !r["daemon_cost"].is_null() {
        daemon_cost(&mut s, &r["daemon_cost"]);
    }
    if !r["cleanup"].is_null() {
        let _ = write!(s, "\nCleanup:");
        for x in rows(&r["cleanup"]) {
            let _ = write!(
                s,
                " after {}, {} of {} programs left;",
                text(&x["signal"]),
                x["left_after"],
                x["programs"]
            );
        }
        s.push('\n');
    }
    s
}

fn latency(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nLatency, listen() returning to the event line read:\n\n\
         | tool | listeners | reported | p50 us | p99 us | max us |\n|---|---|---|---|---|---|"
    );
    for x in rows(v) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            text(&x["tool"]),
            x["listeners"],
            x["reported"],
            f(&x["p50_us"]),
            f(&x["p99_us"]),
            f(&x["max_us"])
        );
    }
    let staged: Vec<&Value> = rows(v).filter(|x| x["stages"].is_object()).collect();
    if staged.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nWhere portwatch's userspace time goes, per open (its own clock readings, \
         `PORTWATCH_BENCH_STAGES`; the rest of the latency is the reader's wake-up on the line):\n\n\
         | tool | kernel event -> ring drained p50 / p99 us | drained -> handed out (decode, table, owner) | handed out -> line encoded (JSON) | encoded -> written (the write; the line's reader, when it preempts the writer) |\n|---|---|---|---|---|"
    );
    for x in staged {
        let st = &x["stages"];
        let pair = |k: &str| format!("{} / {}", f(&st[k]["p50_us"]), f(&st[k]["p99_us"]));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            text(&x["tool"]),
            pair("kernel_to_drained"),
            pair("drained_to_handed_out"),
            pair("handed_out_to_encoded"),
            pair("encoded_to_written")
        );
    }
}

fn completeness(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nCompleteness, listeners living microseconds:\n\n\
         | tool | listeners | opens reported | closes reported | fraction |\n|---|---|---|---|---|"
    );
    for x in rows(v) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            text(&x["tool"]),
            x["listeners"],
            x["opened_reported"],
            x["closed_reported"],
            f(&x["fraction"])
        );
    }
}

fn hot_path(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nHot path, loopback connection churn ({} rounds of {} s, order rotated each round; \
         ratio: median over rounds of the mode's rate over the same round's no-monitor rate; \
         ns per getppid(): a loop of the cheapest syscall on one core, in the same rounds, \
         for what a syscall tracepoint costs every syscall of the host):\n\n\
         | mode | connections/s (median) | ratio to no monitor | lowest, highest round ratio | ns per getppid() (median) |\n|---|---|---|---|---|",
        v["rounds"], v["seconds_per_run"]
    );
    for x in rows(&v["throughput"]) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}, {} | {} |",
            text(&x["mode"]),
            f(&x["conn_per_s"]),
            f(&x["ratio"]),
            f(&x["ratio_min"]),
            f(&x["ratio_max"]),
            f(&x["syscall_ns"])
        );
    }
    let _ = writeln!(
        s,
        "\nKernel run time of each monitor's programs during the churn (kernel.bpf_stats_enabled; \
         the counting itself adds some ns to every run):\n\n\
         | monitor | program | runs per connection | ns per run | kernel ns per connection |\n|---|---|---|---|---|"
    );
    for x in rows(&v["per_run"]) {
        for (i, p) in rows(&x["programs"]).enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                if i == 0 { text(&x["mode"]) } else { "" },
                program_name(p),
                f(&p["runs_per_connection"]),
                f(&p["ns_per_run"]),
                if i == 0 {
                    f(&x["ns_per_connection"])
                } else {
                    String::new()
                },
            );
        }
    }
}

/// A program's name and type (`enum bpf_prog_type`).
fn program_name(p: &Value) -> String {
    let ty = match p["type"].as_u64() {
        Some(5) => "tracepoint".into(),
        Some(9) => "cgroup_sock".into(),
        Some(13) => "sock_ops".into(),
        Some(17) => "raw_tracepoint".into(),
        Some(26) => "tp_btf".into(),
        Some(n) => format!("type {n}"),
        None => "?".into(),
    };
    match p["name"].as_str() {
        Some(name) if !name.is_empty() => format!("`{name}` ({ty})"),
        _ => ty,
    }
}

fn udp(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nUDP churn, socket() + bind(127.0.0.1:0) + close() from two processes ({} rounds of {} s, order rotated):\n\n\
         | mode | sockets/s (median) | ratio to no monitor | lowest, highest round ratio |\n|---|---|---|---|",
        v["rounds"], v["seconds_per_run"]
    );
    for x in rows(&v["throughput"]) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}, {} |",
            text(&x["mode"]),
            f(&x["sockets_per_s"]),
            f(&x["ratio"]),
            f(&x["ratio_min"]),
            f(&x["ratio_max"])
        );
    }
    let _ = writeln!(
        s,
        "\nportwatch (its lines to /dev/null) received {} kernel events per socket and its ring buffer dropped {} (medians of the rounds; a bind and a close make 2).",
        f(&v["events_received_per_socket"]),
        f(&v["events_dropped_per_socket"])
    );
    let _ = writeln!(
        s,
        "\nportwatch --udp-aggregate counted {} of the binds made in its `udp_summary` lines (the lowest round).",
        f(&v["aggregate_binds_counted"])
    );
    let _ = writeln!(
        s,
        "\nEach stage once more with bpf_stats on (one run of {} s each; the counting adds some ns to every run): the programs' kernel time and the reader's wake-ups (its threads' voluntary context switches):\n\n\
         | stage | sockets/s | kernel ns per socket | reader wake-ups/s | program | runs per socket | ns per run |\n|---|---|---|---|---|---|---|",
        v["seconds_per_run"]
    );
    for st in rows(&v["stages"]) {
        for (i, p) in rows(&st["programs"]).enumerate() {
            let head = if i == 0 {
                format!(
                    "{} | {} | {} | {}",
                    text(&st["mode"]),
                    f(&st["sockets_per_s"]),
                    f(&st["ns_per_socket"]),
                    f(&st["wakeups_per_s"])
                )
            } else {
                " |  |  | ".to_string()
            };
            let _ = writeln!(
                s,
                "| {head} | {} | {} | {} |",
                program_name(p),
                f(&p["runs_per_socket"]),
                f(&p["ns_per_run"])
            );
        }
    }
    let _ = writeln!(
        s,
        "\nUDP latency, bind() returning to the event line read:\n\n\
         | tool | sockets | reported | p50 us | p99 us | max us |\n|---|---|---|---|---|---|"
    );
    for x in rows(&v["latency"]) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            text(&x["tool"]),
            x["listeners"],
            x["reported"],
            f(&x["p50_us"]),
            f(&x["p99_us"]),
            f(&x["max_us"])
        );
    }
    let _ = writeln!(
        s,
        "\nUDP completeness, sockets bound and closed back to back:\n\n\
         | tool | sockets | opens reported | closes reported | fraction |\n|---|---|---|---|---|"
    );
    for x in rows(&v["completeness"]) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            text(&x["tool"]),
            x["listeners"],
            x["opened_reported"],
            x["closed_reported"],
            f(&x["fraction"])
        );
    }
}

fn flood(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nA flood from user nobody ({} waves of {} sockets calling listen() without bind(), opened and closed, for {} s): \
         root's listeners opened every 10 ms meanwhile, {} of {} reported; delay listen() -> line read: \
         p50 {} ms, p99 {} ms, max {} ms; portwatch used {}% of a CPU.",
        v["waves"],
        v["per_wave"],
        f(&v["probing_s"]),
        v["reported"],
        v["probes"],
        f(&v["p50_ms"]),
        f(&v["p99_ms"]),
        f(&v["max_ms"]),
        f(&v["cpu_percent"]),
    );
}

fn tui(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nThe TUI with {} listeners, in tmux (200 x 50): a frame (rows rebuilt, filtered, sorted, drawn) \
         p50 {} ms, p99 {} ms, max {} ms over {} frames; RSS {} MiB (peak {} MiB); a new listener on screen \
         after p50 {} ms, p99 {} ms ({} listeners, capture-pane polled); idle {} s: {} frames, {} wakeups.",
        v["listeners"],
        f(&v["frame_p50_ms"]),
        f(&v["frame_p99_ms"]),
        f(&v["frame_max_ms"]),
        v["frames"],
        f(&v["rss_mib"]),
        f(&v["peak_rss_mib"]),
        f(&v["to_screen_p50_ms"]),
        f(&v["to_screen_p99_ms"]),
        v["probes"],
        v["idle_s"],
        v["idle_frames"],
        v["idle_wakeups"],
    );
}

fn storm(s: &mut String, st: &Value) {
    let _ = writeln!(
        s,
        "\nLoss under a storm: {} processes, {} listeners ({} events) through a {}-byte ring \
         buffer: {} events dropped, {} resyncs; state equal to procfs {} ms after the storm \
         ended ({} listeners kept open). After convergence, {} of {} new listeners reported \
         opened and {} of {} closed.",
        st["workers"],
        st["listeners"],
        st["events"],
        st["ring_buffer_bytes"],
        st["drops"],
        st["resyncs"],
        f(&st["converge_ms_after_storm"]),
        st["kept_open"],
        st["after"]["opened_reported"],
        st["after"]["listeners"],
        st["after"]["closed_reported"],
        st["after"]["listeners"],
    );
}

fn scan(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nSnapshot cost (median wall time):\n\n\
         | listeners | processes | portwatch list ms | ss -ltnp ms | lsof ms | portwatch / ss |\n|---|---|---|---|---|---|"
    );
    for x in rows(v) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            x["listeners"],
            x["processes"],
            f(&x["portwatch_list_ms"]),
            f(&x["ss_ltnp_ms"]),
            f(&x["lsof_ms"]),
            f(&x["ratio_vs_ss"])
        );
    }
}

fn daemon_cost(s: &mut String, c: &Value) {
    let _ = writeln!(
        s,
        "\nDaemon cost over {} s: idle {} CPU s, {} wakeups, RSS {} MiB; at {} events/s {}% \
         CPU, RSS {} MiB. Start-up peak (VmHWM) {} MiB.",
        c["seconds"],
        f(&c["idle_cpu_s"]),
        c["idle_voluntary_switches"],
        f(&c["idle_rss_mib"]),
        f(&c["events_per_s"]),
        f(&c["busy_cpu_percent"]),
        f(&c["busy_rss_mib"]),
        f(&c["peak_rss_mib"])
    );
}

fn context(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nOwner contexts (each process's story, told once):\n\n\
         | at start: listeners | processes | told in (ms) | new processes | per new process p50 (us) | p99 (us) | max (us) |\n\
         |---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {} | {} | {} | {} |",
        v["start_listeners"],
        v["start_processes"],
        f(&v["start_ms"]),
        v["new_processes"],
        f(&v["new_p50_us"]),
        f(&v["new_p99_us"]),
        f(&v["new_max_us"]),
    );
}

fn journal(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nJournal under the storm (4 processes, 8000 listeners through a 4 KiB ring buffer), without and with `--journal`:\n\n\
         | round | kernel drops without | with | opens reported | opens journaled | closes journaled (with the workers' exit) |\n\
         |---|---|---|---|---|---|"
    );
    for (i, r) in rows(&v["storm"]).enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            i + 1,
            r["drops_without"],
            r["drops_with"],
            r["reported_opened"],
            r["journaled_opened"],
            r["journaled_closed"],
        );
    }
    let fill = &v["fill"];
    let _ = writeln!(
        s,
        "\nJournal of {} events written through its writer, then `history --at` ({} instants; wall time of the command):\n\n\
         | events/s written | lost | bytes per event | --at --port p50 (ms) | max (ms) | --at, whole host, p50 (ms) | max (ms) | holders at an instant p50 |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {} | {} | {} | {} | {} |",
        fill["events"],
        fill["queries"],
        f(&fill["events_per_s"]),
        fill["lost"],
        f(&fill["bytes_per_event"]),
        f(&fill["at_port_ms_p50"]),
        f(&fill["at_port_ms_max"]),
        f(&fill["at_host_ms_p50"]),
        f(&fill["at_host_ms_max"]),
        f(&fill["holders_at_host_p50"]),
    );
}

fn exposure(s: &mut String, v: &Value) {
    let _ = writeln!(
        s,
        "\nExposure, {} nftables rules and {} listeners in one namespace:\n\n\
         | full re-judgement p50 (ms) | max (ms) | re-judgements | reading the rules p50 (ms) | max (ms) | rule change to exposure_changed p50 (ms) | max (ms) | changes |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {} | {} | {} | {} | {} | {} | {} | {} |",
        v["rules"],
        v["listeners"],
        f(&v["rejudge_p50_ms"]),
        f(&v["rejudge_max_ms"]),
        v["rejudgements"],
        f(&v["read_p50_ms"]),
        f(&v["read_max_ms"]),
        f(&v["change_to_event_p50_ms"]),
        f(&v["change_to_event_max_ms"]),
        v["changes"],
    );
}
