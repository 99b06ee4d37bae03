//! The container images (`images/*.Dockerfile`) and the kind run (`e2e/kind/`) need a Docker engine to build and
//! run, which the machines running `make test` do not have. What they must agree on with the rest of the
//! repository is checked here as text instead, so that a renamed binary, a changed default port, a new workspace
//! member or a new environment variable of the end-to-end test breaks this test rather than the next kind run.
//!
//! `make images` (`images/build.sh`) builds the same images here without a Docker engine; the `local_*` tests run
//! it (a minute or more when the release binaries are not built yet) and compare the images it writes, as
//! `ctr images import` reads them, with the Dockerfiles. The release workflow (`.github/workflows/release.yml`)
//! is checked against the Dockerfiles too; `release_workflow.rs` lints it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use canal_api::{CanalInstance, ServerConfig};
use canal_operator::values::Values;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const MUSL: &str = "x86_64-unknown-linux-musl";
/// The variables the runner Job sets, which are the ones `kubernetes_e2e.rs` reads in existing-cluster mode.
const RUNNER_ENV: [&str; 4] = ["CANAL_E2E_CLUSTER", "CANAL_E2E_MYSQL", "CANAL_E2E_ZOOKEEPER", "KUBECTL"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

fn read(path: &str) -> String {
    let full = repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

fn yaml_docs(path: &str) -> Vec<Yaml> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|doc: &Yaml| !doc.is_null())
        .collect()
}

fn yaml_doc(docs: &[Yaml], kind: &str, name: &str) -> Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
        .clone()
}

/// Splits on whitespace outside double quotes and drops the quotes, as Docker reads LABEL, COPY and the like.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in text.chars() {
        match c {
            '"' => (quoted, started) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

struct Stage {
    base: String,
    name: Option<String>,
    /// (keyword in upper case, arguments)
    instructions: Vec<(String, String)>,
}

struct Copy {
    from: Option<String>,
    sources: Vec<String>,
    dest: String,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        let keyword = keyword.to_string();
        self.instructions
            .iter()
            .filter(move |(k, _)| *k == keyword)
            .map(|(_, args)| args.as_str())
    }

    fn only(&self, keyword: &str) -> &str {
        let all: Vec<&str> = self.all(keyword).collect();
        assert_eq!(
            all.len(),
            1,
            "stage FROM {} has {} {keyword} instructions",
            self.base,
            all.len()
        );
        all[0]
    }

    fn copies(&self) -> Vec<Copy> {
        self.all("COPY")
            .map(|args| {
                let mut words = words(args);
                let dest = words.pop().expect("COPY has a destination");
                let from = words.iter().find_map(|w| w.strip_prefix("--from=")).map(str::to_string);
                words.retain(|w| !w.starts_with("--"));
                Copy {
                    from,
                    sources: words,
                    dest,
                }
            })
            .collect()
    }

    /// The exec-form ENTRYPOINT; scratch has no shell to run the shell form.
    fn entrypoint(&self) -> Vec<String> {
        let args = self.only("ENTRYPOINT");
        serde_json::from_str(args).unwrap_or_else(|e| panic!("ENTRYPOINT {args} is not the exec (JSON) form: {e}"))
    }

    /// USER as numeric (uid, gid): Kubernetes can only enforce runAsNonRoot on a numeric user.
    fn user(&self) -> (u32, u32) {
        let user = self.only("USER");
        let (uid, gid) = user.split_once(':').unwrap_or((user, user));
        let number = |s: &str| {
            s.parse::<u32>()
                .unwrap_or_else(|_| panic!("USER {user} is not numeric"))
        };
        (number(uid), number(gid))
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.all("LABEL")
            .flat_map(words)
            .map(|w| {
                let (k, v) = w
                    .split_once('=')
                    .unwrap_or_else(|| panic!("LABEL {w} is not key=value"));
                (k.to_string(), v.to_string())
            })
            .collect()
    }
}

struct Dockerfile {
    path: String,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn load(name: &str) -> Self {
        let path = format!("images/{name}");
        let text = read(&path);
        let mut lines = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let line = line.trim();
            // Docker drops comment and blank lines, also inside a continued instruction.
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part);
                    current.push(' ');
                }
                None => {
                    current.push_str(line);
                    lines.push(std::mem::take(&mut current));
                }
            }
        }
        assert!(
            current.is_empty(),
            "{path}: the last instruction ends in a line continuation"
        );
        let mut stages: Vec<Stage> = Vec::new();
        for line in lines {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let (keyword, args) = (keyword.to_ascii_uppercase(), args.trim().to_string());
            if keyword == "FROM" {
                let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                let name = match words.as_slice() {
                    [_] => None,
                    [_, r#as, name] if r#as.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    _ => panic!("{path}: cannot read FROM {args}"),
                };
                stages.push(Stage {
                    base: words[0].to_string(),
                    name,
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.instructions.push((keyword, args));
            } else {
                assert_eq!(keyword, "ARG", "{path}: {keyword} before the first FROM");
            }
        }
        assert!(!stages.is_empty(), "{path} has no FROM");
        Dockerfile { path, stages }
    }

    fn stage(&self, name: &str) -> &Stage {
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{}: no stage named {name}", self.path))
    }

    fn last(&self) -> &Stage {
        self.stages.last().expect("at least one stage")
    }

    /// The builder's cargo command and the `install SRC DEST` that takes its output out of the cached target dir.
    fn build(&self) -> Build {
        let builder = self.stage("builder");
        let run = builder
            .all("RUN")
            .find(|r| r.contains("cargo build") || r.contains("cargo test"))
            .unwrap_or_else(|| panic!("{}: the builder stage runs no cargo build or cargo test", self.path));
        let segments: Vec<Vec<&str>> = run
            .split("&&")
            .map(|s| s.split_whitespace().filter(|w| !w.starts_with("--mount=")).collect())
            .collect();
        let cargo = segments
            .iter()
            .find(|s| s.first() == Some(&"cargo"))
            .unwrap_or_else(|| panic!("{}: cargo must start a command of its RUN", self.path));
        let install = segments
            .iter()
            .find(|s| s.first() == Some(&"install"))
            .unwrap_or_else(|| {
                panic!(
                    "{}: the cargo RUN must install its output out of the cache mount",
                    self.path
                )
            });
        let mut build = Build {
            subcommand: cargo[1].to_string(),
            flags: BTreeSet::new(),
            options: BTreeMap::new(),
            installed_from: install[install.len() - 2].trim_matches('"').to_string(),
            installed_to: install[install.len() - 1].to_string(),
            workdir: builder.only("WORKDIR").to_string(),
        };
        let mut words = cargo[2..].iter().take_while(|w| !w.starts_with('>'));
        while let Some(word) = words.next() {
            if let Some((key, value)) = word.split_once('=') {
                build.options.insert(key.to_string(), value.to_string());
            } else if ["-p", "--package", "--bin", "--test", "--target"].contains(word) {
                let value = words
                    .next()
                    .unwrap_or_else(|| panic!("{}: {word} without a value", self.path));
                let key = if *word == "--package" { "-p" } else { word };
                build.options.insert(key.to_string(), value.to_string());
            } else {
                build.flags.insert(word.to_string());
            }
        }
        build
    }
}

struct Build {
    subcommand: String,
    flags: BTreeSet<String>,
    options: BTreeMap<String, String>,
    installed_from: String,
    installed_to: String,
    workdir: String,
}

impl Build {
    fn option(&self, key: &str) -> &str {
        self.options
            .get(key)
            .unwrap_or_else(|| panic!("cargo {} has no {key}", self.subcommand))
    }
}

fn metadata() -> Json {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--offline", "--format-version", "1"])
        .current_dir(repo_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn package<'a>(metadata: &'a Json, name: &str) -> &'a Json {
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no workspace package {name}"))
}

fn targets<'a>(package: &'a Json) -> impl Iterator<Item = (&'a str, &'a str, &'a str)> + 'a {
    package["targets"].as_array().into_iter().flatten().flat_map(|t| {
        let name = t["name"].as_str().unwrap_or_default();
        let src = t["src_path"].as_str().unwrap_or_default();
        t["kind"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(move |k| Some((k.as_str()?, name, src)))
    })
}

fn has_target(package: &Json, kind: &str, name: &str) -> bool {
    targets(package).any(|(k, n, _)| k == kind && n == name)
}

/// The string literals passed to calls spelled `{call}("...")` in `text`.
fn literal_args(text: &str, call: &str) -> BTreeSet<String> {
    let open = format!("{call}(\"");
    text.match_indices(&open)
        .filter_map(|(i, _)| {
            let rest = &text[i + open.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// Docker's names of the architectures the images are built for, and the musl target of each.
const MUSL_BY_ARCH: [(&str, &str); 2] = [("amd64", MUSL), ("arm64", "aarch64-unknown-linux-musl")];

/// The musl target the builder compiles for on each TARGETARCH. A literal `--target TRIPLE` serves that triple's
/// architecture only; `--target "$VAR"` reads VAR from the file that an earlier RUN wrote from a `case` over
/// TARGETARCH (`amd64) VAR=TRIPLE ;;`), after `rustup target add "$VAR"`.
fn musl_targets(dockerfile: &Dockerfile, build: &Build) -> BTreeMap<String, String> {
    let path = &dockerfile.path;
    let builder = dockerfile.stage("builder");
    let target = build.option("--target").trim_matches('"');
    let Some(var) = target.strip_prefix('$') else {
        let arch = MUSL_BY_ARCH
            .iter()
            .find(|(_, triple)| *triple == target)
            .unwrap_or_else(|| panic!("{path}: --target {target} is not a musl target of an image platform"))
            .0;
        assert!(
            builder
                .all("RUN")
                .any(|r| r.contains(&format!("rustup target add {target}"))),
            "{path}: the builder never adds the {target} target"
        );
        return BTreeMap::from([(arch.to_string(), target.to_string())]);
    };
    assert!(
        builder.all("ARG").any(|a| a == "TARGETARCH"),
        "{path}: --target {target} without ARG TARGETARCH"
    );
    let cargo_run = builder
        .all("RUN")
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build RUN");
    let read = format!("{var}=$(cat ");
    let file = cargo_run
        .find(&read)
        .map(|i| &cargo_run[i + read.len()..])
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("{path}: the cargo RUN does not set {var} from a file"));
    let case = builder
        .all("RUN")
        .find(|r| r.contains("case ") && r.contains("TARGETARCH") && r.contains(&format!("> {file}")))
        .unwrap_or_else(|| panic!("{path}: no RUN writes {file} from a case over TARGETARCH"));
    assert!(
        case.contains(&format!("rustup target add \"${var}\"")),
        "{path}: the RUN that picks ${var} does not add it with rustup"
    );
    let arm = format!(") {var}=");
    let targets: BTreeMap<String, String> = case
        .split(";;")
        .filter_map(|piece| {
            let (pattern, body) = piece.split_once(&arm)?;
            let arch = pattern.split_whitespace().last()?;
            let triple = body.split_whitespace().next()?;
            Some((arch.to_string(), triple.to_string()))
        })
        .collect();
    assert!(!targets.is_empty(), "{path}: the case over TARGETARCH sets no {var}");
    targets
}

/// The workspace's images: Dockerfile, the package and the kind and name of the target it builds.
const IMAGES: [(&str, &str, &str, &str); 3] = [
    ("canal-instance.Dockerfile", "canal-instance", "bin", "canal-instance"),
    ("canal-operator.Dockerfile", "canal-operator", "bin", "canal-operator"),
    ("e2e-runner.Dockerfile", "canal-operator", "test", "kubernetes_e2e"),
];

#[test]
fn each_image_builds_a_workspace_target_statically_and_runs_it() {
    let metadata = metadata();
    for (file, package_name, kind, target) in IMAGES {
        let dockerfile = Dockerfile::load(file);
        let build = dockerfile.build();
        let path = &dockerfile.path;
        let expected_subcommand = if kind == "bin" { "build" } else { "test" };
        assert_eq!(build.subcommand, expected_subcommand, "{path}");
        assert_eq!(build.option("-p"), package_name, "{path}: package");
        let flag = if kind == "bin" { "--bin" } else { "--test" };
        assert_eq!(build.option(flag), target, "{path}: {flag}");
        let package = package(&metadata, package_name);
        assert!(
            has_target(package, kind, target),
            "{path} builds {kind} target {target} of {package_name}, which the package does not have"
        );
        for required in ["--release", "--locked"] {
            assert!(
                build.flags.contains(required),
                "{path}: cargo {} without {required}",
                build.subcommand
            );
        }
        // Only a musl build is static, and scratch has no dynamic loader.
        let musl = musl_targets(&dockerfile, &build);
        assert!(
            musl.get("amd64").map(String::as_str) == Some(MUSL),
            "{path}: builds {musl:?}, not {MUSL} on amd64"
        );
        let builder = dockerfile.stage("builder");
        let env: BTreeSet<String> = builder.all("ENV").flat_map(words).collect();
        for (arch, triple) in &musl {
            assert!(
                MUSL_BY_ARCH.contains(&(arch.as_str(), triple.as_str())),
                "{path}: builds {triple} for {arch}"
            );
            // ring, zstd-sys and psm compile C for the target with the cc crate, which reads CC_<target>.
            let cc = format!("CC_{}=musl-gcc", triple.replace('-', "_"));
            assert!(env.contains(&cc), "{path}: the builder does not set {cc}");
        }
        assert!(
            builder.all("RUN").any(|r| r.contains("musl-tools")),
            "{path}: the C parts of the dependencies need musl-gcc (musl-tools)"
        );

        // The builder's Rust must accept the workspace's edition and rust-version.
        let version = builder
            .base
            .strip_prefix("rust:")
            .and_then(|v| v.split('-').next())
            .unwrap_or_else(|| panic!("{path}: builder FROM {} is not a rust:X.Y image", builder.base));
        let parse = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
        let minimum = package["rust_version"].as_str().expect("rust-version is set");
        assert!(
            parse(version) >= parse(minimum),
            "{path}: rust {version} is older than the workspace's rust-version {minimum}"
        );

        if kind == "bin" {
            assert_eq!(
                build.installed_from,
                format!("target/{}/release/{target}", build.option("--target").trim_matches('"')),
                "{path}: installs something other than the binary cargo built"
            );
        } else {
            // Test binaries carry a hash in their name; cargo's JSON report names the one just built.
            let run = builder.all("RUN").find(|r| r.contains("cargo test")).unwrap();
            assert!(
                run.contains("--message-format=json") && run.contains(&format!(".target.name == \"{target}\"")),
                "{path}: the test binary must be picked from cargo's JSON report by target name {target}"
            );
        }

        // The final stage copies exactly that file to where ENTRYPOINT runs it.
        let last = dockerfile.last();
        let copies = last.copies();
        let copied = copies
            .iter()
            .find(|c| c.from.as_deref() == Some("builder") && c.sources == [build.installed_to.clone()])
            .unwrap_or_else(|| {
                panic!(
                    "{path}: the final stage does not copy {} from builder",
                    build.installed_to
                )
            });
        let entrypoint = last.entrypoint();
        assert!(
            entrypoint.contains(&copied.dest),
            "{path}: ENTRYPOINT {entrypoint:?} does not run {}",
            copied.dest
        );
        // Whatever ENTRYPOINT starts (the binary, or an init in front of it) must be in the image.
        assert!(
            copies.iter().any(|c| c.dest == entrypoint[0]),
            "{path}: ENTRYPOINT starts {}, which no COPY puts into the image",
            entrypoint[0]
        );

        let (uid, gid) = last.user();
        assert!(uid != 0 && gid != 0, "{path}: the final stage runs as root");
        let labels = last.labels();
        for key in ["source", "description", "licenses"] {
            let key = format!("org.opencontainers.image.{key}");
            assert!(labels.contains_key(&key), "{path}: no {key} label");
        }
        assert_eq!(
            labels["org.opencontainers.image.licenses"].as_str(),
            package["license"].as_str().unwrap(),
            "{path}: license label"
        );
    }
}

#[test]
fn server_images_are_scratch_with_ca_roots_and_the_default_ports() {
    let values: Values = serde_yaml::from_str(&read("charts/canal-operator/values.yaml")).expect("values.yaml");
    let server = ServerConfig::default();
    let operator_port = operator_listen_default_port();
    assert_eq!(
        operator_port, values.metrics_port,
        "canal-operator --listen defaults to port {operator_port}, the chart's metricsPort is {}",
        values.metrics_port
    );
    let expected = [
        (
            "canal-instance.Dockerfile",
            BTreeSet::from([server.port, server.metrics_port]),
        ),
        ("canal-operator.Dockerfile", BTreeSet::from([values.metrics_port])),
    ];
    for (file, ports) in expected {
        let dockerfile = Dockerfile::load(file);
        let path = &dockerfile.path;
        let last = dockerfile.last();
        assert_eq!(last.base, "scratch", "{path}: final stage");
        let exposed: BTreeSet<u16> = last
            .all("EXPOSE")
            .flat_map(str::split_whitespace)
            .map(|p| {
                let port = p.strip_suffix("/tcp").unwrap_or(p);
                port.parse()
                    .unwrap_or_else(|_| panic!("{path}: EXPOSE {p} is not a port"))
            })
            .collect();
        assert_eq!(exposed, ports, "{path}: EXPOSE");
        let ca = "/etc/ssl/certs/ca-certificates.crt";
        assert!(
            last.copies()
                .iter()
                .any(|c| c.from.is_some() && c.sources == [ca] && c.dest == ca),
            "{path}: scratch has no CA roots unless {ca} is copied in"
        );
    }
}

/// The port of `canal-operator --listen`'s default, from the binary's own help.
fn operator_listen_default_port() -> u16 {
    let output = Command::new(env!("CARGO_BIN_EXE_canal-operator"))
        .arg("--help")
        .env_remove("CANAL_OPERATOR_LISTEN")
        .output()
        .expect("run canal-operator --help");
    let help = String::from_utf8_lossy(&output.stdout);
    let listen = &help[help.find("--listen").expect("canal-operator has --listen")..];
    let default = &listen[listen.find("[default: ").expect("--listen has a default") + "[default: ".len()..];
    let default = &default[..default.find(']').unwrap()];
    let port = default.rsplit_once(':').map_or(default, |(_, p)| p);
    port.parse()
        .unwrap_or_else(|_| panic!("--listen default {default} has no port"))
}

#[test]
fn pods_run_as_the_image_user() {
    let docs = yaml_docs("examples/canalinstance.yaml");
    let example = docs
        .iter()
        .find(|d| d["kind"] == "CanalInstance")
        .expect("the example has a CanalInstance");
    let ci: CanalInstance = serde_yaml::from_value(example.clone()).expect("the example is a valid CanalInstance");
    let pod = canal_operator::resources::stateful_set(&ci, "hash")
        .spec
        .template
        .spec
        .unwrap();
    let context = pod.security_context.unwrap();
    let (uid, gid) = Dockerfile::load("canal-instance.Dockerfile").last().user();
    assert_eq!(context.run_as_user, Some(uid.into()), "canal-instance pods' runAsUser");
    assert_eq!(
        context.run_as_group,
        Some(gid.into()),
        "canal-instance pods' runAsGroup"
    );

    let (uid, gid) = Dockerfile::load("canal-operator.Dockerfile").last().user();
    let deployment = read("charts/canal-operator/templates/deployment.yaml");
    for line in [format!("runAsUser: {uid}"), format!("runAsGroup: {gid}")] {
        assert!(deployment.contains(&line), "the chart's Deployment does not set {line}");
    }
}

#[test]
fn runner_image_keeps_repository_files_where_the_test_looks_for_them() {
    let dockerfile = Dockerfile::load("e2e-runner.Dockerfile");
    let build = dockerfile.build();
    // repo_root() is the parent of e2e's CARGO_MANIFEST_DIR, which is compiled in.
    let builder_copies = dockerfile.stage("builder").copies();
    assert!(
        builder_copies
            .iter()
            .any(|c| c.sources == ["e2e/Cargo.toml"] && c.dest == "e2e/"),
        "{}: e2e/Cargo.toml must sit in e2e/ under WORKDIR {}",
        dockerfile.path,
        build.workdir
    );
    let last = dockerfile.last();
    let copied: Vec<String> = last
        .copies()
        .into_iter()
        .filter(|c| c.from.is_none())
        .map(|c| c.dest.trim_end_matches('/').to_string())
        .collect();
    let test = read("operator/tests/kubernetes_e2e.rs");
    let used = literal_args(&test, "repo_root().join");
    assert!(
        !used.is_empty(),
        "kubernetes_e2e.rs no longer reads files through repo_root()"
    );
    for file in used {
        let top = file.split('/').next().unwrap();
        let dest = format!("{}/{top}", build.workdir.trim_end_matches('/'));
        assert!(
            copied.contains(&dest),
            "kubernetes_e2e.rs reads {file}, but {} does not copy {top}/ to {dest}",
            dockerfile.path
        );
    }
    assert_eq!(
        last.entrypoint()[1..],
        ["--nocapture", "--test-threads=1"],
        "{}: test arguments",
        dockerfile.path
    );
}

#[test]
fn copies_exist_and_cover_what_cargo_compiles() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    let is_ignored = |path: &str| {
        let path = path.trim_end_matches('/');
        ignored.iter().any(|pattern| match pattern.strip_prefix("**/") {
            Some(name) => path.split('/').any(|part| part == name),
            None => path == pattern || path.starts_with(&format!("{pattern}/")),
        })
    };
    let metadata = metadata();
    let root = metadata["workspace_root"].as_str().unwrap().to_string();
    for (file, package_name, kind, target) in IMAGES {
        let dockerfile = Dockerfile::load(file);
        let path = &dockerfile.path;
        let mut sources: Vec<String> = Vec::new();
        for stage in &dockerfile.stages {
            for copy in stage.copies().into_iter().filter(|c| c.from.is_none()) {
                for source in copy.sources {
                    assert!(
                        repo_root().join(&source).exists(),
                        "{path}: COPY {source}, which does not exist"
                    );
                    assert!(
                        !is_ignored(&source),
                        "{path}: COPY {source}, which .dockerignore leaves out"
                    );
                    if stage.name.as_deref() == Some("builder") {
                        sources.push(source);
                    }
                }
            }
        }
        // A pattern naming a path inside a copied directory (say, instance/proto/) silently thins out the COPY.
        // Patterns starting with **/ are for build output anywhere and never match a source file.
        for source in &sources {
            for file in files_under(&repo_root().join(source)) {
                let relative = file.strip_prefix(repo_root()).unwrap().to_string_lossy().into_owned();
                let thinned = ignored
                    .iter()
                    .filter(|p| !p.starts_with("**/"))
                    .any(|p| relative == *p || relative.starts_with(&format!("{p}/")));
                assert!(
                    !thinned,
                    "{path}: COPY {source} would miss {relative}, which .dockerignore leaves out"
                );
            }
        }
        // Cargo loads every member and compiles libraries, binaries and build scripts from their sources.
        let covered = |file: &str| {
            let relative = file.strip_prefix(&root).unwrap().trim_start_matches('/');
            sources
                .iter()
                .any(|s| relative == s || relative.starts_with(&format!("{}/", s.trim_end_matches('/'))))
        };
        for package in metadata["packages"].as_array().unwrap() {
            let name = package["name"].as_str().unwrap();
            let manifest = package["manifest_path"].as_str().unwrap();
            assert!(
                covered(manifest),
                "{path}: the builder does not copy {name}'s Cargo.toml"
            );
            for (target_kind, target_name, src) in targets(package) {
                let needed = matches!(target_kind, "lib" | "bin" | "custom-build")
                    || (name == package_name && target_kind == kind && target_name == target);
                assert!(
                    !needed || covered(src),
                    "{path}: the builder does not copy {src} ({target_kind} {target_name} of {name})"
                );
            }
        }
    }
}

fn run_sh_images() -> BTreeMap<String, String> {
    let output = Command::new("bash")
        .arg(repo_root().join("e2e/kind/run.sh"))
        .arg("--print-images")
        .output()
        .expect("run bash e2e/kind/run.sh --print-images");
    assert!(
        output.status.success(),
        "run.sh --print-images failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (file, image) = l.split_once(' ').unwrap_or_else(|| panic!("run.sh printed {l:?}"));
            (file.to_string(), image.to_string())
        })
        .collect()
}

#[test]
fn run_sh_builds_what_the_chart_the_example_and_the_job_run() {
    let images = run_sh_images();
    let files: BTreeSet<&str> = images.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = IMAGES.iter().map(|i| i.0).collect();
    assert_eq!(files, expected, "run.sh builds these Dockerfiles");

    let values: Values = serde_yaml::from_str(&read("charts/canal-operator/values.yaml")).expect("values.yaml");
    let chart_image = format!("{}:{}", values.image.repository, values.image.tag);
    assert_eq!(
        images["canal-operator.Dockerfile"], chart_image,
        "the chart's default image"
    );

    let example = yaml_docs("examples/canalinstance.yaml")
        .into_iter()
        .find(|d| d["kind"] == "CanalInstance")
        .expect("the example has a CanalInstance");
    assert_eq!(
        Some(images["canal-instance.Dockerfile"].as_str()),
        example["spec"]["image"].as_str(),
        "the example's spec.image"
    );

    let job = yaml_doc(&yaml_docs("e2e/kind/runner.yaml"), "Job", "canal-e2e-runner");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        Some(images["e2e-runner.Dockerfile"].as_str()),
        container["image"].as_str(),
        "the runner Job's image"
    );
    // kind load puts images on the node; pulling would look for them in a registry.
    assert_eq!(
        container["imagePullPolicy"].as_str(),
        Some("Never"),
        "the runner Job's imagePullPolicy"
    );
    assert_ne!(
        values.image.tag, "latest",
        "with tag latest the chart's pods would always pull and never use the loaded image"
    );
}

#[test]
fn runner_job_sets_exactly_what_the_e2e_test_reads() {
    let docs = yaml_docs("e2e/kind/runner.yaml");
    let job = yaml_doc(&docs, "Job", "canal-e2e-runner");
    let pod = &job["spec"]["template"]["spec"];
    let env: BTreeMap<String, String> = pod["containers"][0]["env"]
        .as_sequence()
        .expect("the runner container has env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no literal value"));
            (name, value.to_string())
        })
        .collect();
    let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(RUNNER_ENV), "runner.yaml env");

    let test = read("operator/tests/kubernetes_e2e.rs");
    let read_vars = literal_args(&test, "var");
    for name in RUNNER_ENV {
        assert!(
            read_vars.contains(name),
            "kubernetes_e2e.rs no longer reads {name}, which runner.yaml sets"
        );
    }
    for name in read_vars.iter().filter(|v| v.starts_with("CANAL_E2E_")) {
        assert!(
            env.contains_key(name),
            "kubernetes_e2e.rs reads {name}, which runner.yaml does not set"
        );
    }
    let mode = &env["CANAL_E2E_CLUSTER"];
    assert!(
        test.contains(&format!("Ok(\"{mode}\")")),
        "kubernetes_e2e.rs does not compare CANAL_E2E_CLUSTER with {mode:?}"
    );

    let runner = Dockerfile::load("e2e-runner.Dockerfile");
    assert!(
        runner.last().copies().iter().any(|c| c.dest == env["KUBECTL"]),
        "KUBECTL={} is not where the runner image puts kubectl",
        env["KUBECTL"]
    );
    let (uid, gid) = runner.last().user();
    assert_eq!(
        pod["securityContext"]["runAsUser"].as_u64(),
        Some(uid.into()),
        "runner runAsUser"
    );
    assert_eq!(
        pod["securityContext"]["runAsGroup"].as_u64(),
        Some(gid.into()),
        "runner runAsGroup"
    );

    let account = pod["serviceAccountName"]
        .as_str()
        .expect("the Job names its ServiceAccount");
    let namespace = job["metadata"]["namespace"].as_str().unwrap();
    yaml_doc(&docs, "ServiceAccount", account);
    let bound = docs.iter().any(|d| {
        d["kind"] == "ClusterRoleBinding"
            && d["roleRef"]["name"] == "cluster-admin"
            && d["subjects"].as_sequence().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"].as_str() == Some(account) && s["namespace"] == namespace
            })
    });
    assert!(bound, "ServiceAccount {account} is not bound to cluster-admin");

    // The addresses name Services of services.yaml.
    let services = yaml_docs("e2e/kind/services.yaml");
    let mysql = env["CANAL_E2E_MYSQL"].as_str();
    let zookeeper = env["CANAL_E2E_ZOOKEEPER"].as_str();
    for address in std::iter::once(mysql).chain(zookeeper.split(',')) {
        check_address(&services, address);
    }
    let statefulset = yaml_doc(&services, "StatefulSet", "zookeeper");
    let servers = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "ZOO_SERVERS")
        .and_then(|e| e["value"].as_str())
        .expect("ZooKeeper has ZOO_SERVERS");
    for address in zookeeper.split(',') {
        let host = address.split(':').next().unwrap();
        assert!(
            servers.contains(&format!("={host}:")),
            "{host} is not a server of the ensemble: {servers}"
        );
    }
}

/// `service.namespace.svc.cluster.local:port`, or `pod.service.namespace...` for a StatefulSet pod behind a
/// headless Service.
fn check_address(services: &[Yaml], address: &str) {
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address} has no port"));
    let port: u64 = port.parse().unwrap_or_else(|_| panic!("{address}: bad port"));
    let labels: Vec<&str> = host
        .strip_suffix(".svc.cluster.local")
        .unwrap_or_else(|| panic!("{address} is not a cluster DNS name"))
        .split('.')
        .collect();
    let (pod, service, namespace) = match labels.as_slice() {
        [service, namespace] => (None, *service, *namespace),
        [pod, service, namespace] => (Some(*pod), *service, *namespace),
        _ => panic!("{address}: cannot read the Service"),
    };
    let svc = yaml_doc(services, "Service", service);
    assert_eq!(
        svc["metadata"]["namespace"].as_str(),
        Some(namespace),
        "{address}: namespace"
    );
    assert!(
        svc["spec"]["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|p| p["port"].as_u64() == Some(port)),
        "{address}: Service {service} has no port {port}"
    );
    if let Some(pod) = pod {
        assert_eq!(
            svc["spec"]["clusterIP"].as_str(),
            Some("None"),
            "{address}: pod names need a headless Service"
        );
        let (set, ordinal) = pod
            .rsplit_once('-')
            .unwrap_or_else(|| panic!("{pod} is not a StatefulSet pod"));
        let statefulset = yaml_doc(services, "StatefulSet", set);
        assert_eq!(
            statefulset["spec"]["serviceName"].as_str(),
            Some(service),
            "{address}: serviceName"
        );
        let replicas = statefulset["spec"]["replicas"].as_u64().unwrap_or(1);
        assert!(
            ordinal.parse::<u64>().unwrap() < replicas,
            "{address}: {set} has {replicas} replicas"
        );
    }
}

fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let entries = std::fs::read_dir(path).unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
    entries
        .map(|entry| entry.expect("directory entry").path())
        .flat_map(|p| files_under(&p))
        .collect()
}

/// The images of Dockerfiles whose final stage is empty: the server images, which users run and the release
/// publishes. (The e2e runner is a test harness.)
fn server_images() -> Vec<(&'static str, &'static str, &'static str)> {
    IMAGES
        .iter()
        .filter(|(file, _, kind, _)| *kind == "bin" && Dockerfile::load(file).last().base == "scratch")
        .map(|(file, package, _, target)| (file.trim_end_matches(".Dockerfile"), *package, *target))
        .collect()
}

/// A step's `with` input, with each `${{ env.NAME }}` replaced by the workflow's env.NAME.
fn workflow_input(workflow: &Yaml, step: &Yaml, key: &str) -> String {
    let mut value = step["with"][key]
        .as_str()
        .map(str::to_string)
        .or_else(|| step["with"][key].as_bool().map(|b| b.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "release.yml: {} has no with.{key}",
                step["uses"].as_str().unwrap_or("?")
            )
        });
    while let Some(start) = value.find("${{ env.") {
        let end = start + value[start..].find("}}").expect("an expression ends with }}") + 2;
        let name = value[start + "${{ env.".len()..end - 2].trim();
        let env = workflow["env"][name]
            .as_str()
            .unwrap_or_else(|| panic!("release.yml: no env.{name}"));
        value.replace_range(start..end, env);
    }
    value
}

fn workflow_step<'a>(workflow: &'a Yaml, job: &str, uses: &str) -> &'a Yaml {
    workflow["jobs"][job]["steps"]
        .as_sequence()
        .unwrap_or_else(|| panic!("release.yml: job {job} has no steps"))
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(&format!("{uses}@"))))
        .unwrap_or_else(|| panic!("release.yml: job {job} does not use {uses}"))
}

#[test]
fn release_workflow_publishes_the_server_images_for_platforms_they_build_for() {
    let workflow: Yaml = serde_yaml::from_str(&read(".github/workflows/release.yml")).expect("release.yml");
    let tags: Vec<&str> = workflow["on"]["push"]["tags"]
        .as_sequence()
        .expect("release.yml runs on tag pushes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(tags, ["v*"], "release.yml: on.push.tags");

    let matrix: BTreeSet<&str> = workflow["jobs"]["images"]["strategy"]["matrix"]["image"]
        .as_sequence()
        .expect("the images job has a matrix of images")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let servers = server_images();
    let expected: BTreeSet<&str> = servers.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(matrix, expected, "release.yml publishes these images");

    let build = workflow_step(&workflow, "images", "docker/build-push-action");
    assert_eq!(
        workflow_input(&workflow, build, "file"),
        "images/${{ matrix.image }}.Dockerfile",
        "release.yml: build-push-action file"
    );
    // The Dockerfiles COPY paths relative to the repository root.
    assert_eq!(workflow_input(&workflow, build, "context"), ".", "release.yml: context");
    assert_eq!(workflow_input(&workflow, build, "push"), "true", "release.yml: push");
    let image_tags = workflow_input(&workflow, build, "tags");
    assert!(
        image_tags.starts_with("ghcr.io/") && image_tags.contains("/${{ matrix.image }}:"),
        "release.yml: tags {image_tags}"
    );

    // Every platform has a musl target in every Dockerfile, and QEMU for those that are not the runner's.
    let platforms = workflow_input(&workflow, build, "platforms");
    let qemu = workflow_input(
        &workflow,
        workflow_step(&workflow, "images", "docker/setup-qemu-action"),
        "platforms",
    );
    workflow_step(&workflow, "images", "docker/setup-buildx-action");
    let login = workflow_step(&workflow, "images", "docker/login-action");
    assert_eq!(
        workflow_input(&workflow, login, "registry"),
        "ghcr.io",
        "release.yml: login registry"
    );
    let arches: Vec<&str> = platforms
        .split(',')
        .map(|p| {
            p.trim()
                .strip_prefix("linux/")
                .unwrap_or_else(|| panic!("release.yml: platform {p} is not linux"))
        })
        .collect();
    assert!(
        arches.contains(&"amd64") && arches.contains(&"arm64"),
        "release.yml: platforms {platforms}"
    );
    for arch in &arches {
        assert!(
            *arch == "amd64" || qemu.split(',').any(|q| q.trim() == *arch),
            "release.yml: {arch} is built without QEMU for it ({qemu})"
        );
    }
    let args = workflow_input(&workflow, build, "build-args");
    let labels = workflow_input(&workflow, build, "labels");
    for (name, _, _) in &servers {
        let dockerfile = Dockerfile::load(&format!("{name}.Dockerfile"));
        let musl = musl_targets(&dockerfile, &dockerfile.build());
        for arch in &arches {
            assert!(
                musl.contains_key(*arch),
                "{}: no musl target for {arch}, which release.yml builds",
                dockerfile.path
            );
        }
        // Each build argument of the final stage is given, and the labels add up to the full OCI set.
        for arg in dockerfile.last().all("ARG") {
            let arg = arg.split('=').next().unwrap();
            assert!(
                args.lines().any(|l| l.trim().starts_with(&format!("{arg}="))),
                "release.yml: build-args lack {arg} of {}",
                dockerfile.path
            );
        }
        let mut keys: BTreeSet<String> = dockerfile.last().labels().into_keys().collect();
        keys.extend(
            labels
                .lines()
                .filter_map(|l| l.trim().split_once('='))
                .map(|(k, _)| k.to_string()),
        );
        for key in OCI_LABELS {
            let key = format!("org.opencontainers.image.{key}");
            assert!(
                keys.contains(&key),
                "{}: neither it nor release.yml sets {key}",
                dockerfile.path
            );
        }
    }

    // The chart: packaged from charts/, pushed as an OCI artifact, pointed at the published operator image.
    let chart_steps: String = workflow["jobs"]["chart"]["steps"]
        .as_sequence()
        .expect("release.yml has a chart job")
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for command in ["helm package charts/canal-operator", "helm push ", "oci://"] {
        assert!(
            chart_steps.contains(command),
            "release.yml: the chart job does not run {command}"
        );
    }
    let values: Values = serde_yaml::from_str(&read("charts/canal-operator/values.yaml")).expect("values.yaml");
    assert!(
        chart_steps.contains(&format!("repository: {}$", values.image.repository)),
        "release.yml: the chart job does not replace image.repository {} of values.yaml",
        values.image.repository
    );
}

/// The labels every image carries (org.opencontainers.image.*).
const OCI_LABELS: [&str; 6] = ["source", "version", "revision", "title", "description", "licenses"];

/// The output directory of `images/build.sh` (`make images`), run once per test binary: it builds the release
/// binaries and assembles the images, or finds them up to date.
fn local_images() -> &'static Path {
    static OUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    OUT.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo_root().join("images/build.sh"))
            .current_dir(repo_root())
            .env("CARGO", env!("CARGO"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run bash images/build.sh");
        assert!(output.status.success(), "images/build.sh failed (its output is above)");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let out = stdout
            .lines()
            .last()
            .expect("images/build.sh prints its output directory");
        PathBuf::from(out)
    })
}

/// A docker-archive as `ctr images import` reads it, unpacked: its tags, its config and its layers applied in
/// order to `rootfs`.
struct ArchiveImage {
    repo_tags: Vec<String>,
    config: Json,
    rootfs: PathBuf,
    _dir: tempfile::TempDir,
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl ArchiveImage {
    fn load(tar: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let archive = dir.path().join("archive");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::create_dir_all(&rootfs).unwrap();
        run(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(&archive));
        let manifest: Json =
            serde_json::from_slice(&std::fs::read(archive.join("manifest.json")).expect("manifest.json"))
                .expect("manifest.json is JSON");
        let manifest = manifest
            .as_array()
            .filter(|m| m.len() == 1)
            .map(|m| &m[0])
            .unwrap_or_else(|| panic!("{}: not exactly one image", tar.display()));
        let config_file = manifest["Config"].as_str().expect("manifest names the config");
        let config: Json =
            serde_json::from_slice(&std::fs::read(archive.join(config_file)).expect("config")).expect("config JSON");
        for layer in manifest["Layers"].as_array().expect("layers") {
            // GNU tar recognises a compressed layer by itself.
            let layer = archive.join(layer.as_str().unwrap());
            run(Command::new("tar")
                .arg("-xf")
                .arg(&layer)
                .arg("-C")
                .arg(&rootfs)
                .arg("--no-same-owner"));
        }
        let repo_tags = manifest["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        ArchiveImage {
            repo_tags,
            config,
            rootfs,
            _dir: dir,
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        self.config["config"]["Labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    }

    fn entrypoint(&self) -> Vec<String> {
        serde_json::from_value(self.config["config"]["Entrypoint"].clone()).expect("an Entrypoint")
    }

    fn user(&self) -> String {
        self.config["config"]["User"].as_str().unwrap_or_default().to_string()
    }

    fn exposed_ports(&self) -> BTreeSet<String> {
        self.config["config"]["ExposedPorts"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// An absolute path of the image, with symlinks followed inside the image.
    fn resolve(&self, path: &str) -> PathBuf {
        let mut path = self.rootfs.join(path.trim_start_matches('/'));
        for _ in 0..16 {
            let Ok(link) = std::fs::read_link(&path) else {
                return path;
            };
            path = if link.is_absolute() {
                self.rootfs.join(link.strip_prefix("/").unwrap())
            } else {
                path.parent().unwrap().join(link)
            };
        }
        panic!("{path:?}: too many symlinks");
    }

    fn files(&self) -> Vec<String> {
        files_under(&self.rootfs)
            .into_iter()
            .map(|f| f.strip_prefix(&self.rootfs).unwrap().to_string_lossy().into_owned())
            .collect()
    }
}

/// `readelf` output for an ELF file.
fn readelf(flag: &str, file: &Path) -> String {
    run(Command::new("readelf").arg(flag).arg("-W").arg(file))
}

fn interpreter(file: &Path) -> Option<String> {
    let program_headers = readelf("-l", file);
    let start = program_headers.find("[Requesting program interpreter: ")? + "[Requesting program interpreter: ".len();
    let rest = &program_headers[start..];
    Some(rest[..rest.find(']').unwrap()].to_string())
}

/// An image reference as containerd (and the kubelet) spell it: `canal-rs/x:1` is `docker.io/canal-rs/x:1`.
fn docker_reference(reference: &str) -> String {
    let first = reference.split('/').next().unwrap();
    if reference.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        reference.to_string()
    } else if reference.contains('/') {
        format!("docker.io/{reference}")
    } else {
        format!("docker.io/library/{reference}")
    }
}

fn host_docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The binary and the init of an image can start: the loader and every library they need are in the image.
fn assert_runnable(image: &ArchiveImage, name: &str, file: &str) {
    let path = image.resolve(file);
    assert!(path.is_file(), "{name}: {file} is not in the image");
    let Some(loader) = interpreter(&path) else {
        return; // static
    };
    assert!(
        image.resolve(&loader).is_file(),
        "{name}: {file} needs {loader}, which is not in the image"
    );
    let mut queue = vec![path];
    let mut seen = BTreeSet::new();
    while let Some(elf) = queue.pop() {
        let dynamic = readelf("-d", &elf);
        for line in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
            let lib = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
            if !seen.insert(lib.to_string()) {
                continue;
            }
            let found = ["lib", "usr/lib"]
                .iter()
                .flat_map(|dir| {
                    let base = image.rootfs.join(dir);
                    let multiarch: Vec<PathBuf> = std::fs::read_dir(&base)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with("-linux-gnu"))
                        .map(|e| e.path().join(lib))
                        .collect();
                    multiarch.into_iter().chain([base.join(lib)])
                })
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{name}: {file} needs {lib}, which is not in the image's library dirs"));
            let relative = found
                .strip_prefix(&image.rootfs)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            queue.push(image.resolve(&relative));
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(repo_root()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn build_sh_builds_what_the_dockerfiles_build() {
    let script = read("images/build.sh");
    // The same cargo build as the Dockerfiles, on the host's glibc.
    for (name, package, target) in server_images() {
        for part in [
            format!("-p {package} --bin {target}"),
            "--release".into(),
            "--locked".into(),
        ] {
            assert!(
                script.contains(&part),
                "images/build.sh does not build {name} with {part}"
            );
        }
        assert!(
            script.contains(&format!("build_image {name} ")),
            "images/build.sh builds no {name} image"
        );
    }
    // What `make images` runs.
    let makefile = read("Makefile");
    let recipe = makefile
        .split("\nimages:")
        .nth(1)
        .expect("the Makefile has an images target");
    assert!(
        recipe.lines().take(3).any(|l| l.contains("images/build.sh")),
        "make images does not run images/build.sh"
    );
}

#[test]
fn local_images_match_the_dockerfiles() {
    let out = local_images();
    let tags = run_sh_images();
    let metadata = metadata();
    let version = package(&metadata, "canal-operator")["version"]
        .as_str()
        .unwrap()
        .to_string();
    let license = package(&metadata, "canal-operator")["license"]
        .as_str()
        .unwrap()
        .to_string();
    let revision = git(&["rev-parse", "HEAD"]);
    let source = git(&["remote", "get-url", "origin"]);
    let is_root = run(Command::new("id").arg("-u")).trim() == "0";

    for (name, _, target) in server_images() {
        let file = format!("{name}.Dockerfile");
        let dockerfile = Dockerfile::load(&file);
        let last = dockerfile.last();
        let tar = out.join(format!("{name}.tar"));
        let image = ArchiveImage::load(&tar);

        // The name and tag the chart, the example and run.sh use, as containerd names them.
        assert_eq!(
            image.repo_tags,
            [docker_reference(&tags[&file])],
            "{}: tags",
            tar.display()
        );
        assert_eq!(image.config["os"], "linux", "{name}: os");
        assert_eq!(image.config["architecture"], host_docker_arch(), "{name}: architecture");
        assert_eq!(image.entrypoint(), last.entrypoint(), "{name}: entrypoint");
        let (uid, gid) = last.user();
        assert_eq!(image.user(), format!("{uid}:{gid}"), "{name}: user");
        assert_ne!(uid, 0, "{name} runs as root");
        let exposed: BTreeSet<String> = last
            .all("EXPOSE")
            .flat_map(str::split_whitespace)
            .map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })
            .collect();
        assert_eq!(image.exposed_ports(), exposed, "{name}: exposed ports");

        let labels = image.labels();
        for key in OCI_LABELS {
            assert!(
                labels.contains_key(&format!("org.opencontainers.image.{key}")),
                "{name}: no org.opencontainers.image.{key} label"
            );
        }
        for (key, value) in last.labels() {
            if !value.contains("${") {
                assert_eq!(
                    labels.get(&key),
                    Some(&value),
                    "{name}: label {key} differs from {file}"
                );
            }
        }
        assert_eq!(labels["org.opencontainers.image.title"], target, "{name}: title");
        assert_eq!(
            labels["org.opencontainers.image.version"], version,
            "{name}: version label"
        );
        assert_eq!(
            labels["org.opencontainers.image.licenses"], license,
            "{name}: licenses label"
        );
        match &revision {
            Some(revision) => assert!(
                labels["org.opencontainers.image.revision"].starts_with(revision.as_str()),
                "{name}: revision label {} is not HEAD {revision}",
                labels["org.opencontainers.image.revision"]
            ),
            None => assert_eq!(labels["org.opencontainers.image.revision"], "", "{name}: revision"),
        }
        assert_eq!(
            labels["org.opencontainers.image.source"].is_empty(),
            source.is_none(),
            "{name}: source label {:?} with git remote {source:?}",
            labels["org.opencontainers.image.source"]
        );

        // Everything the Dockerfile copies into its image, at the same paths.
        for copy in last.copies() {
            assert!(
                image.resolve(&copy.dest).is_file(),
                "{name}: {} (copied by {file}) is not in the image",
                copy.dest
            );
        }
        // No shell or other general-purpose tool: the image runs its entrypoint and nothing else.
        let files = image.files();
        for file in &files {
            let base = file.rsplit('/').next().unwrap();
            assert!(
                !["sh", "bash", "dash", "busybox", "env", "apt", "dpkg"].contains(&base),
                "{name}: the image has {file}"
            );
        }
        assert!(!image.rootfs.join("bin/sh").exists(), "{name}: the image has /bin/sh");
        // The user exists, for tools and libraries that look it up.
        let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).expect("/etc/passwd");
        assert!(
            passwd.lines().any(|l| l.split(':').nth(2) == Some(&uid.to_string())),
            "{name}: no user {uid} in /etc/passwd"
        );
        let group = std::fs::read_to_string(image.rootfs.join("etc/group")).expect("/etc/group");
        assert!(
            group.lines().any(|l| l.split(':').nth(2) == Some(&gid.to_string())),
            "{name}: no group {gid} in /etc/group"
        );
        for file in image.entrypoint().iter().filter(|a| a.starts_with('/')) {
            assert_runnable(&image, name, file);
        }
        let binary = image.resolve(&format!("/usr/local/bin/{target}"));
        assert!(
            !readelf("-S", &binary).contains(".debug_info"),
            "{name}: the binary keeps its debug info (the Dockerfiles build with CARGO_PROFILE_RELEASE_DEBUG=0)"
        );
        // As the image would start it, where a chroot is allowed.
        if is_root {
            let mut command = Command::new("chroot");
            command
                .arg(format!("--userspec={uid}:{gid}"))
                .arg(&image.rootfs)
                .args(image.entrypoint())
                .arg("--help");
            let help = run(&mut command);
            assert!(help.contains("Usage"), "{name} --help printed {help}");
        } else {
            eprintln!("{name}: not root, so the entrypoint is not started in a chroot");
        }
    }
}

#[test]
fn local_pause_image_is_one_static_program_that_stops_on_sigterm() {
    let out = local_images();
    let version = package(&metadata(), "canal-operator")["version"]
        .as_str()
        .unwrap()
        .to_string();
    let image = ArchiveImage::load(&out.join("pause.tar"));
    assert_eq!(
        image.repo_tags,
        [docker_reference(&format!("canal-rs/pause:{version}"))],
        "pause: tags"
    );
    assert_eq!(image.entrypoint(), ["/pause"], "pause: entrypoint");
    assert_eq!(image.config["os"], "linux", "pause: os");
    assert_eq!(image.config["architecture"], host_docker_arch(), "pause: architecture");
    let user = image.user();
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "pause: user {user:?} is not a numeric non-root user"
    );
    let labels = image.labels();
    for key in OCI_LABELS {
        assert!(
            labels.contains_key(&format!("org.opencontainers.image.{key}")),
            "pause: no org.opencontainers.image.{key} label"
        );
    }
    assert_eq!(image.files(), ["pause"], "pause: the image holds only the program");
    let pause = image.rootfs.join("pause");
    assert_eq!(interpreter(&pause), None, "pause is not static");

    let mut child = Command::new(&pause).spawn().expect("start pause");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "pause exited by itself");
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "pause did not stop on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "pause exited with {status} on SIGTERM");
}
