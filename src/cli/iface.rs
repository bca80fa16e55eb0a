//! `zfw iface set IF|all --FLAG on|off ...` and `zfw iface show`.

use clap::{Args, Subcommand, ValueEnum};

use crate::bpffs::{check_privileges, Root};
use crate::error::{Error, Result};
use crate::iface_state::{self, flag_bit, IfaceView};
use crate::maps::Maps;
use crate::rules::store;

#[derive(Debug, Subcommand)]
pub enum IfaceCmd {
    /// Change interface settings
    Set(SetArgs),
    /// Show interface settings and addresses
    Show(ShowArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Interface name, or `all` for every interface zfw is attached to
    #[arg(value_name = "IF|all")]
    pub iface: String,
    /// Answer ICMP echo requests to interface addresses
    #[arg(long, value_name = "on|off")]
    pub icmp_echo: Option<OnOff>,
    /// Let SSH (tcp/22) to interface addresses in
    #[arg(long, value_name = "on|off")]
    pub ssh: Option<OnOff>,
    /// Pass non-IP frames other than ARP
    #[arg(long, value_name = "on|off")]
    pub pass_non_tuple: Option<OnOff>,
    /// Accept IPv6 (off: only neighbour discovery, RA and DHCPv6 replies)
    #[arg(long, value_name = "on|off")]
    pub ipv6: Option<OnOff>,
    /// Emit an event for every verdict on this interface
    #[arg(long, value_name = "on|off")]
    pub verbose: Option<OnOff>,
    /// Honour only rules that list this interface
    #[arg(long, value_name = "on|off")]
    pub per_interface_rules: Option<OnOff>,
    /// Apply egress rules to traffic leaving this interface
    #[arg(long, value_name = "on|off")]
    pub outbound_filter: Option<OnOff>,
    /// Masquerade (source NAT) traffic leaving this interface: the inside port
    /// is kept when free for the destination, never one another inside host
    /// closed there in the last 120 s; half-open TCP mappings time out after
    /// 60 s and give way first when ports run out
    #[arg(long, value_name = "on|off")]
    pub masquerade: Option<OnOff>,
    /// Pass VRRP (IP protocol 112)
    #[arg(long, value_name = "on|off")]
    pub vrrp: Option<OnOff>,
    /// Pass EAPOL (802.1X) frames
    #[arg(long, value_name = "on|off")]
    pub eapol: Option<OnOff>,
    /// SYN-flood protection for protected ports
    #[arg(long, value_name = "on|off")]
    pub ddos: Option<OnOff>,
    /// OT (DNP3/Modbus) response filtering
    #[arg(long, value_name = "on|off")]
    pub ot_filtering: Option<OnOff>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Only this interface
    #[arg(value_name = "IF")]
    pub iface: Option<String>,
    /// One JSON document
    #[arg(long)]
    pub json: bool,
}

impl SetArgs {
    fn changes(&self) -> Vec<(&'static str, OnOff)> {
        let all = [
            ("icmp_echo", self.icmp_echo),
            ("ssh", self.ssh),
            ("pass_non_tuple", self.pass_non_tuple),
            ("ipv6", self.ipv6),
            ("verbose", self.verbose),
            ("per_interface_rules", self.per_interface_rules),
            ("outbound_filter", self.outbound_filter),
            ("masquerade", self.masquerade),
            ("vrrp", self.vrrp),
            ("eapol", self.eapol),
            ("ddos", self.ddos),
            ("ot_filtering", self.ot_filtering),
        ];
        all.into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect()
    }
}

pub fn run(root: &Root, cmd: IfaceCmd) -> Result<()> {
    match cmd {
        IfaceCmd::Set(a) => set(root, a),
        IfaceCmd::Show(a) => show(root, a),
    }
}

fn set(root: &Root, a: SetArgs) -> Result<()> {
    let changes = a.changes();
    if changes.is_empty() {
        return Err(Error::usage(
            "iface set needs at least one setting, e.g. --icmp-echo on",
        ));
    }
    let mut bits = Vec::new();
    for (n, v) in &changes {
        let b = flag_bit(n).ok_or_else(|| Error::runtime(format!("zfw_abi.h has no flag {n}")))?;
        bits.push((*n, b, matches!(v, OnOff::On)));
    }
    check_privileges()?;
    let maps = Maps::open(root)?;
    let _lock = root.lock()?;
    let targets = iface_state::select(&maps, &a.iface)?;
    if targets.is_empty() {
        return Err(Error::usage("zfw is not attached to any interface"));
    }
    // masquerade needs both TC hooks: refuse before changing anything
    if bits.iter().any(|(n, _, on)| *n == "masquerade" && *on) {
        for (_, st) in &targets {
            crate::nat::check_hooks(&iface_state::name_str(&st.name), st)?;
        }
    }
    for (idx, mut st) in targets {
        for (_, b, on) in &bits {
            if *on {
                st.flags |= b;
            } else {
                st.flags &= !b;
            }
        }
        iface_state::store(&maps, idx, &st)?;
        let name = iface_state::name_str(&st.name);
        let desc: Vec<String> = bits
            .iter()
            .map(|(n, _, on)| format!("{}={}", n.replace('_', "-"), if *on { "on" } else { "off" }))
            .collect();
        crate::outln!("zfw: {name}: {}", desc.join(" "))?;
    }
    iface_state::refresh_all(&maps)?;
    // cached decisions depend on per-interface-rules: start a new generation
    store::bump_gen(&maps)
}

fn show(root: &Root, a: ShowArgs) -> Result<()> {
    check_privileges()?;
    let maps = Maps::open(root)?;
    {
        let _lock = root.lock()?;
        iface_state::refresh_all(&maps)?;
    }
    let sel = iface_state::select(&maps, a.iface.as_deref().unwrap_or("all"))?;
    let mut views = Vec::new();
    for (idx, st) in &sel {
        views.push(iface_state::view(&maps, *idx, st)?);
    }
    if a.json {
        return super::print_json(&views);
    }
    crate::out!("{}", render(&views))?;
    Ok(())
}

pub fn render(views: &[IfaceView]) -> String {
    let mut s = String::new();
    for v in views {
        s.push_str(&format!("{} (ifindex {})\n", v.name, v.ifindex));
        for (k, on) in &v.settings {
            s.push_str(&format!(
                "  {:<22} {}\n",
                k.replace('_', "-"),
                if *on { "on" } else { "off" }
            ));
        }
        let addrs = if v.addresses.is_empty() {
            "-".to_string()
        } else {
            v.addresses.join(" ")
        };
        s.push_str(&format!("  {:<22} {addrs}\n", "addresses"));
    }
    if views.is_empty() {
        s.push_str("no interfaces\n");
    }
    s
}
