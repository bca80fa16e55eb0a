//! First-packet rows (ZFW_BENCH_ONLY=policy): a SYN decided by the rules
//! at 10, 10k and 250k rules, hit and miss, with the decision cache
//! bypassed, and the cached decision beside them; then steps of that path
//! alone (bench.bpf.c's bench_step_*): the parse, the known-flow check of a
//! SYN no flow has, the rules' decision without the cache.

use zfw::bpffs::Root;
use zfw::maps::{defs, Maps};
use zfw::testkit::packet::*;
use zfw::testkit::run::TestProg;

use super::{bench_progs, frame_to_last_key, rule_set, Bench, Case, IFINDEX};

fn check_first_packet_bypasses_cache(
    maps: &Maps,
    policy: &TestProg,
    first: &TestProg,
) -> zfw::Result<()> {
    use zfw::rules::model::{Action, Direction, Rule};
    let r = Rule {
        direction: Direction::Ingress,
        dst: "10.9.0.0/16".parse().map_err(zfw::Error::runtime)?,
        src: "0.0.0.0/0".parse().map_err(zfw::Error::runtime)?,
        proto: zfw::rules::model::Proto::Tcp,
        ports: "80".parse().map_err(zfw::Error::runtime)?,
        action: Action::Allow,
        interfaces: vec![],
        service_id: None,
    };
    zfw::rules::store::replace_all(maps, &[r])?;
    let f = tcp("192.0.2.1", 40000, "10.9.0.1", 80, TCP_SYN);
    policy.run(&f, IFINDEX)?;
    let (deny, _) = zfw::rules::compile::action_code(Action::Deny);
    // poison every cached decision (all CPUs' slots) with "deny"
    zfw::testkit::decisions::poison_cached_actions(maps, deny)?;
    let cached = policy.run(&f, IFINDEX)?.retval;
    let fresh = first.run(&f, IFINDEX)?.retval;

    if cached != zfw::testkit::run::TC_ACT_SHOT || fresh != zfw::testkit::run::TC_ACT_UNSPEC {
        return Err(zfw::Error::runtime(format!(
            "bench: bench_first_packet does not bypass the cache (cached {cached}, fresh {fresh})"
        )));
    }
    Ok(())
}

pub fn policy_cases(bench: &Bench, root: &Root) -> zfw::Result<Vec<Case>> {
    let maps = Maps::open(root)?;
    let policy = TestProg::open(&root.prog_path("zfw_policy"))?;
    let progs = bench_progs(root, false)?;
    let first = progs.main;
    let mut out = Vec::new();
    let mut add = |name: &str, rules: usize, ns: f64| {
        out.push(Case {
            name: name.into(),
            rules,
            ns,
            floor_ns: bench.floor(),
            memlock_bytes: None,
        })
    };
    // what forgetting the cached decision costs: a frame decided before
    // the policy step (SSH to the interface address), both programs
    let ssh = tcp("10.0.0.1", 40000, "10.0.0.2", 22, TCP_SYN);
    let overhead = bench.measure(&first, &ssh, [0; 5])? - bench.measure(&policy, &ssh, [0; 5])?;
    add("bench_first_packet overhead (in rows below)", 0, overhead);
    check_first_packet_bypasses_cache(&maps, &policy, &first)?;
    for n in [10usize, 10_000, 250_000] {
        let rules = rule_set(n);
        zfw::rules::store::replace_all(&maps, &rules)?;
        let last = &rules[rules.len() - 1];
        let hit = frame_to_last_key(last, last.ports.lo);
        let miss = frame_to_last_key(last, 60000);
        if first.run(&hit, IFINDEX)?.retval != zfw::testkit::run::TC_ACT_UNSPEC {
            return Err(zfw::Error::runtime("bench: the hit frame was not allowed"));
        }
        if first.run(&miss, IFINDEX)?.retval != zfw::testkit::run::TC_ACT_SHOT {
            return Err(zfw::Error::runtime("bench: the miss frame was not dropped"));
        }
        add(
            "first packet, policy hit",
            n,
            bench.measure(&first, &hit, [0; 5])?,
        );
        add(
            "first packet, policy miss (full search)",
            n,
            bench.measure(&first, &miss, [0; 5])?,
        );
        policy.run(&hit, IFINDEX)?;
        add(
            &format!("policy cache hit ({})", defs::MATCHED_MAP.info.name),
            n,
            bench.measure(&policy, &hit, [0; 5])?,
        );
        // the rules' decision alone: it must find the hit's rule and no
        // rule for the miss, as the full path did
        let rules = &progs.step_rules;
        if rules.run(&hit, IFINDEX)?.retval != zfw::testkit::run::TC_ACT_OK
            || rules.run(&miss, IFINDEX)?.retval != zfw::testkit::run::TC_ACT_SHOT
        {
            return Err(zfw::Error::runtime(
                "bench: bench_step_rules does not decide as the policy does",
            ));
        }
        add(
            "step: rules' decision, no cache, hit",
            n,
            bench.measure(rules, &hit, [0; 5])?,
        );
        add(
            "step: rules' decision, no cache, miss",
            n,
            bench.measure(rules, &miss, [0; 5])?,
        );
    }
    // the steps every first packet (and cached decision) takes before the
    // policy: the parse, and the known-flow check of a SYN no flow has
    let syn = tcp("192.0.2.1", 40000, "10.9.0.1", 80, TCP_SYN);
    if progs.step_parse.run(&syn, IFINDEX)?.retval != zfw::testkit::run::TC_ACT_OK
        || progs.step_known.run(&syn, IFINDEX)?.retval != zfw::testkit::run::TC_ACT_SHOT
    {
        return Err(zfw::Error::runtime(
            "bench: the parse or known-flow step did not run as it should",
        ));
    }
    add(
        "step: parse (in every step row)",
        0,
        bench.measure(&progs.step_parse, &syn, [0; 5])?,
    );
    add(
        "step: known-flow check, SYN of no flow",
        0,
        bench.measure(&progs.step_known, &syn, [0; 5])?,
    );
    zfw::rules::store::replace_all(&maps, &[])?;
    Ok(out)
}
