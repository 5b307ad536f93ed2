use std::path::Path;

use super::*;
use crate::units::ByteSize;

const DEV: &str = include_str!("../../boards/dev-x86_64.toml");

fn parse(text: &str) -> Result<BoardFile, Error> {
    BoardFile::parse(Path::new("boards/x.toml"), text.to_string())
}

/// Replaces exactly one occurrence, so a test cannot silently edit nothing.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(DEV.matches(from).count(), 1, "`{from}` must occur once");
    DEV.replacen(from, to, 1)
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Err(Error::Invalid { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

#[test]
fn dev_board_parses_with_typed_values() {
    let b = parse(DEV).unwrap().board;
    assert_eq!(b.board.arch, values::Arch::X86_64);
    assert_eq!(b.resources.memory, ByteSize(512 << 20));
    assert_eq!(b.chain.rpc_urls[0].port, 8545);
    assert_eq!(b.edgex.as_ref().unwrap().devices.len(), 3);
    assert_eq!(b.pricing.payment_interval.get().as_secs(), 5);
}

#[test]
fn relative_paths_resolve_against_the_board_file() {
    let b = BoardFile::parse(Path::new("/etc/boards/dev.toml"), DEV.to_string()).unwrap();
    assert_eq!(
        b.board.identity.key_file,
        Path::new("/etc/boards/../target/dev-gateway/key.json")
    );
    let text = edit(
        "data_dir = \"../target/dev-gateway/data\"",
        "data_dir = \"/var/lib/dedge\"",
    );
    let b = BoardFile::parse(Path::new("/etc/boards/dev.toml"), text).unwrap();
    assert_eq!(b.board.agent.data_dir, Path::new("/var/lib/dedge"));
}

#[test]
fn typo_in_a_key_names_the_position_and_the_right_key() {
    let text = edit("max_leases = 4", "max_leaces = 4");
    let p = &problems(&text)[0];
    assert_eq!((p.line, p.column), (line_of(&text, "max_leaces"), 1));
    assert!(
        p.message.contains("unknown field `max_leaces`"),
        "{}",
        p.message
    );
    assert!(
        p.message.contains("`max_leases`"),
        "lists valid keys: {}",
        p.message
    );
    assert_eq!(p.hint.as_deref(), Some("did you mean `max_leases`?"));
}

#[test]
fn wrong_type_says_what_was_expected() {
    let text = edit("cores = 2", "cores = \"two\"");
    let p = &problems(&text)[0];
    assert_eq!((p.line, p.column), (line_of(&text, "cores ="), 9));
    assert!(
        p.message.contains("expected a whole number"),
        "{}",
        p.message
    );
    assert_eq!(p.key.as_deref(), Some("board.cores"));
}

#[test]
fn missing_key_points_at_its_table() {
    let text = edit("chain_id = 31337             # anvil\n", "");
    let p = &problems(&text)[0];
    assert!(
        p.message.contains("missing field `chain_id`"),
        "{}",
        p.message
    );
    assert_eq!(p.line, line_of(&text, "[chain]"));
    assert!(p.hint.as_deref().unwrap().contains("add `chain_id = ...`"));
}

#[test]
fn impossible_memory_is_located_and_bounded() {
    let text = edit("memory = \"512 MiB\"", "memory = \"8 GiB\"");
    let p = &problems(&text)[0];
    assert_eq!(p.key.as_deref(), Some("resources.memory"));
    assert_eq!((p.line, p.column), (line_of(&text, "\"8 GiB\""), 10));
    assert!(
        p.message.contains("8 GiB offered but the board has 4 GiB"),
        "{}",
        p.message
    );
    assert!(p.hint.as_deref().unwrap().contains("at most 4 GiB"));
    let shown = p.to_string();
    assert!(shown.starts_with("boards/x.toml:"), "{shown}");
    assert!(shown.contains("^^^^^^^"), "caret under the value: {shown}");
}

#[test]
fn unit_errors_come_with_position() {
    let text = edit("disk = \"2 GiB\"", "disk = \"2 G\"");
    let p = &problems(&text)[0];
    assert_eq!(p.line, line_of(&text, "disk = \"2 G\""));
    assert!(p.message.contains("GiB for 2^30 bytes"), "{}", p.message);
}

#[test]
fn semantic_checks_report_every_problem_at_once() {
    let text = edit("cpu_core_second = \"0.0001\"", "cpu_core_second = \"0\"")
        .replace(
            "name = \"Random-Float-Device\"",
            "name = \"Random-Integer-Device\"",
        )
        .replace("rpc_urls = [\"http://127.0.0.1:8545\"]", "rpc_urls = []");
    let keys: Vec<String> = problems(&text).into_iter().filter_map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "chain.rpc_urls",
            "pricing.cpu_core_second",
            "edgex.devices[2].name"
        ],
    );
}

#[test]
fn duplicate_device_is_pointed_at_the_repeat() {
    let text = edit(
        "name = \"Random-Float-Device\"",
        "name = \"Random-Boolean-Device\"",
    );
    let p = &problems(&text)[0];
    assert!(
        p.message
            .contains("device `Random-Boolean-Device` is listed twice")
    );
    assert_eq!(p.key.as_deref(), Some("edgex.devices[2].name"));
    assert_eq!(p.line, line_of(&text, "read = [\"Float32\"") - 1);
}

#[test]
fn command_names_cannot_break_the_grant_format() {
    let text = edit("read = [\"Bool\"]", "read = [\"Bool:r\"]");
    let p = &problems(&text)[0];
    assert!(p.message.contains("`Bool:r` contains `:`"), "{}", p.message);
    assert_eq!(p.key.as_deref(), Some("edgex.devices[1].read[0]"));
}

#[test]
fn jwt_auth_requires_its_secret_store() {
    let text = edit("auth = \"none\"", "auth = \"jwt\"");
    let keys: Vec<String> = problems(&text).into_iter().filter_map(|p| p.key).collect();
    assert_eq!(keys, ["edgex.secret_store", "edgex.credentials_file"]);
}

#[test]
fn unknown_enum_value_suggests_the_nearest() {
    let text = edit("cgroup = \"auto\"", "cgroup = \"v3\"");
    let p = &problems(&text)[0];
    assert!(p.message.contains("unknown variant `v3`"), "{}", p.message);
    assert_eq!(p.hint.as_deref(), Some("did you mean `v1`?"));
}

#[test]
fn checksum_typo_in_a_contract_address_is_caught() {
    let text = edit(
        "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6E0",
    );
    let p = &problems(&text)[0];
    assert!(p.message.contains("EIP-55"), "{}", p.message);
    assert_eq!(p.line, line_of(&text, "market ="));
}

#[test]
fn syntax_errors_are_located() {
    let text = edit("[resources]", "[resources");
    let p = &problems(&text)[0];
    assert_eq!(p.line, line_of(&text, "[resources"));
}

#[test]
fn host_check_compares_with_the_machine() {
    let b = parse(DEV).unwrap();
    let small = HostFacts {
        arch: Some(values::Arch::Aarch64),
        cpus: 1,
        memory: Some(ByteSize(256 << 20)),
        cgroups: host::CgroupSupport {
            v1: ["cpu", "memory", "pids", "freezer"]
                .map(String::from)
                .to_vec(),
            v2: None,
            v2_mount: None,
        },
    };
    let Err(Error::Invalid { problems }) = b.check_host(&small) else {
        panic!("a 256 MiB aarch64 host cannot run the dev board");
    };
    let keys: Vec<&str> = problems.iter().filter_map(|p| p.key.as_deref()).collect();
    assert!(
        keys.starts_with(&["board.arch", "resources.memory"]),
        "{keys:?}"
    );
    assert!(problems[1].message.contains("256 MiB of physical memory"));
}

#[test]
fn edit_distance_counts_swaps_as_one() {
    assert_eq!(edit_distance("memroy", "memory"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(
        closest("cpu_milicores", &["cpu_millicores", "memory"]),
        Some("cpu_millicores")
    );
    assert_eq!(closest("zzz", &["memory", "disk"]), None);
}

/// Any byte edit of a valid board gives Ok or located problems, never a
/// panic, and every reported position lies inside the file.
#[test]
fn mutated_boards_never_panic_and_stay_located() {
    let bytes = DEV.as_bytes();
    let replacements = [b'"', b'=', b'[', b'\n', b'0', b'x', b' ', b'#', b'-'];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..3000 {
        // xorshift: deterministic, no dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % bytes.len() as u64) as usize;
        let with = replacements[(seed >> 32) as usize % replacements.len()];
        let mut mutated = bytes.to_vec();
        mutated[at] = with;
        let Ok(text) = String::from_utf8(mutated) else {
            continue;
        };
        let lines = text.lines().count().max(1);
        if let Err(Error::Invalid { problems }) = parse(&text) {
            assert!(!problems.is_empty());
            for p in problems {
                assert!(p.line >= 1 && p.line <= lines + 1, "{p}");
                assert!(p.column >= 1, "{p}");
            }
        }
    }
}
