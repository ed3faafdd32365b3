//! `[daemon] include`: files of `[tunnels.NAME]` tables, read in name order; every error
//! names its own file, line and column; a name may be defined once across all files.

use std::path::PathBuf;

use crate::{ConfigFile, env, parse_with_env};

/// A main file and a `tunnels.d` folder in a fresh temporary folder.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let files = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(files.path("tunnels.d")).unwrap();
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Parses `main` as the main file (written as `tunneld.toml`).
    fn parse(&self, main: &str) -> Result<crate::Config, Vec<String>> {
        let path = self.write("tunneld.toml", main);
        parse_with_env(&path, main, &env::fixed())
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }
}

const MAIN: &str = "[daemon]\ninclude = [\"tunnels.d/*.toml\"]\n\n[defaults]\nuser = \"tunnel\"\n\n[tunnels.main]\nhost = \"m\"\ndynamic = [\"1080\"]\n";

fn table(name: &str, port: u16) -> String {
    format!("[tunnels.{name}]\nhost = \"{name}.example.com\"\nremote = [\"{port}:localhost:22\"]\n")
}

#[test]
fn the_folder_is_read_in_name_order_with_the_defaults_applied() {
    let f = Files::new();
    let b = f.write("tunnels.d/b.toml", &table("bravo", 2002));
    let a = f.write(
        "tunnels.d/a.toml",
        &format!("{}{}", table("alpha", 2001), table("zulu", 2026)),
    );
    // Not matched: another suffix, an editor's lock file, a folder.
    f.write("tunnels.d/c.toml.bak", "not toml at all [");
    f.write("tunnels.d/.#a.toml", "not toml at all [");
    std::fs::create_dir(f.path("tunnels.d/d.toml")).unwrap();
    let c = f.parse(MAIN).unwrap();
    assert_eq!(
        c.tunnels.keys().collect::<Vec<_>>(),
        ["alpha", "bravo", "main", "zulu"]
    );
    assert_eq!(c.tunnels["bravo"].user, "tunnel");
    assert_eq!(
        c.files,
        [
            ConfigFile {
                path: f.path("tunneld.toml"),
                tunnels: vec!["main".into()],
            },
            ConfigFile {
                path: a,
                tunnels: vec!["alpha".into(), "zulu".into()],
            },
            ConfigFile {
                path: b,
                tunnels: vec!["bravo".into()],
            },
        ]
    );
    assert_eq!(c.daemon.include, [f.path("tunnels.d/*.toml")]);
}

#[test]
fn an_empty_or_missing_folder_holds_no_tunnels() {
    let f = Files::new();
    assert_eq!(f.parse(MAIN).unwrap().tunnels.len(), 1);
    let missing = MAIN.replace("tunnels.d/*.toml", "nowhere/*.toml");
    let c = f.parse(&missing).unwrap();
    assert_eq!(c.tunnels.len(), 1);
    assert_eq!(c.files.len(), 1);
    assert_eq!(c.daemon.include, [f.path("nowhere/*.toml")]);
}

#[test]
fn a_file_named_without_wildcards_must_exist() {
    let f = Files::new();
    let one = f.write("one.toml", &table("one", 2001));
    let text = format!(
        "[daemon]\ninclude = [\"{}\", \"two.toml\"]\n",
        one.display()
    );
    let errors = f.parse(&text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(":2:") && errors[0].contains("two.toml\": no such file"),
        "{errors:?}"
    );
    f.write("two.toml", &table("two", 2002));
    let c = f.parse(&text).unwrap();
    assert_eq!(c.tunnels.keys().collect::<Vec<_>>(), ["one", "two"]);
}

#[test]
fn each_error_names_its_own_file_line_and_column() {
    let f = Files::new();
    let a = f.write(
        "tunnels.d/a.toml",
        "[tunnels.alpha]\nhost = \"a\"\nremote = [\"2001:localhost:22\"]\nconnect_timeout = \"soon\"\n",
    );
    let b = f.write(
        "tunnels.d/b.toml",
        "[daemon]\nwatch = true\n[tunnels.bravo]\nhots = \"b\"\ndynamic = [\"1081\"]\n",
    );
    let main = MAIN.replace("dynamic = [\"1080\"]", "dynamic = [\"x\"]");
    let errors = f.parse(&main).unwrap_err();
    let main_path = f.path("tunneld.toml");
    let want = [
        format!("{}:9:12: ", main_path.display()),
        format!("{}:4:19: connect_timeout", a.display()),
        format!(
            "{}:1:2: [daemon] cannot be set in an included file",
            b.display()
        ),
        format!("{}:3:10: tunnel \"bravo\" has no host", b.display()),
        format!("{}:4:1: unknown key \"hots\"", b.display()),
    ];
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
    for (got, want) in errors.iter().zip(&want) {
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}…");
    }
}

#[test]
fn a_name_defined_in_two_files_is_an_error_at_the_second() {
    let f = Files::new();
    let a = f.write("tunnels.d/a.toml", &table("box", 2001));
    let b = f.write("tunnels.d/b.toml", &format!("\n\n{}", table("box", 2002)));
    let errors = f.parse(MAIN).unwrap_err();
    assert_eq!(
        errors,
        [format!(
            "{}:3:10: tunnel \"box\" is already defined at {}:1:10; a name may be used once \
             in the main file and all its includes together",
            b.display(),
            a.display()
        )]
    );
    // The main file's own tunnel counts too.
    f.write("tunnels.d/b.toml", &table("main", 2002));
    let errors = f.parse(MAIN).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!(
            "already defined at {}:7:10",
            f.path("tunneld.toml").display()
        )),
        "{errors:?}"
    );
}

#[test]
fn a_syntax_error_in_one_file_does_not_hide_the_others() {
    let f = Files::new();
    let a = f.write("tunnels.d/a.toml", "[tunnels.alpha\nhost = \"a\"\n");
    let b = f.write(
        "tunnels.d/b.toml",
        "[tunnels.bravo]\nhost = \"b\"\nremote = [\"99999:localhost:22\"]\n",
    );
    let errors = f.parse(MAIN).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with(&format!("{}:1:", a.display())) && errors[0].contains("invalid TOML"),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with(&format!("{}:3:11: ", b.display())),
        "{errors:#?}"
    );
}

#[test]
fn clashing_listeners_across_files_are_found() {
    let f = Files::new();
    f.write(
        "tunnels.d/a.toml",
        "[tunnels.alpha]\nhost = \"a\"\nlocal = [\"8080:web:80\"]\n",
    );
    let b = f.write(
        "tunnels.d/b.toml",
        "[tunnels.bravo]\nhost = \"b\"\nlocal = [\"8080:other:80\"]\n",
    );
    let errors = f.parse(MAIN).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{}:3:10: local forward \"8080:other:80\" would listen on the same address as local forward \"8080:web:80\" in tunnel \"alpha\"", b.display())),
        "{errors:?}"
    );
}

#[test]
fn patterns_are_checked() {
    let f = Files::new();
    for (pattern, want) in [
        ("*/x.toml", "wildcards may stand in the file name only"),
        ("tunnels.d/*", "must name .toml files"),
        ("tunnels.d/*.conf", "must name .toml files"),
        ("", "include: empty pattern"),
    ] {
        let text = format!("[daemon]\ninclude = [\"{pattern}\"]\n");
        let errors = f.parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{pattern}: {errors:?}");
        assert!(
            errors[0].contains(":2:12: ") && errors[0].contains(want),
            "{pattern}: {errors:?}"
        );
    }
    let errors = f.parse("[daemon]\ninclude = 3\n").unwrap_err();
    assert!(errors[0].contains("include must be"), "{errors:?}");
}

#[test]
fn a_pattern_that_names_the_main_file_does_not_read_it_twice() {
    let f = Files::new();
    let text = "[daemon]\ninclude = [\"*.toml\"]\n[tunnels.t]\nhost = \"h\"\ndynamic = [\"1\"]\n";
    let c = f.parse(text).unwrap();
    assert_eq!(c.files.len(), 1);
    assert_eq!(c.tunnels.len(), 1);
}

#[test]
fn an_unreadable_or_huge_file_is_named() {
    let f = Files::new();
    let big = f.write(
        "tunnels.d/big.toml",
        &"#".repeat(crate::include::MAX_INCLUDED_FILE_BYTES as usize + 1),
    );
    let errors = f.parse(MAIN).unwrap_err();
    assert_eq!(
        errors,
        [format!(
            "{}: the file is larger than {} bytes; is it really a tunnel table?",
            big.display(),
            crate::include::MAX_INCLUDED_FILE_BYTES
        )]
    );
}
