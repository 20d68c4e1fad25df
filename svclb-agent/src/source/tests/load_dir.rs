//! Reading a directory: which files, in which order, and the change detector.
use std::{fs, os::unix::fs::symlink, time::SystemTime};

use super::TempDir;
use crate::source::{
    SourceError,
    manifests::{dir_fingerprint, load_dir, manifest_files},
    objects::key,
};

fn svc(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 80}}]}}\n"
    )
}

#[test]
fn reads_yaml_yml_json_in_name_order_and_skips_the_rest() {
    let dir = TempDir::new();
    dir.write("b.yml", &svc("b"));
    dir.write("a.yaml", &svc("a"));
    dir.write(
        "c.json",
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c"}}"#,
    );
    dir.write("D.YAML", &svc("d"));
    for skipped in [
        ".hidden.yaml",
        "a.yaml~",
        ".a.yaml.swp",
        "#a.yaml#",
        "notes.txt",
        "a.yaml.bak",
        "kustomization",
    ] {
        dir.write(skipped, &svc("skipped"));
    }
    fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    fs::create_dir(dir.path().join("nested")).unwrap();
    dir.write("nested/e.yaml", &svc("skipped"));
    symlink(
        dir.path().join("missing.yaml"),
        dir.path().join("dangling.yaml"),
    )
    .unwrap();

    let files: Vec<String> = manifest_files(dir.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["D.YAML", "a.yaml", "b.yml", "c.json"]);
    let (objs, errors) = load_dir(dir.path()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let names: Vec<String> = objs.services.iter().map(|s| key(&s.metadata)).collect();
    assert_eq!(names, ["default/d", "default/a", "default/b", "default/c"]);
}

#[test]
fn config_map_volume_layout_through_symlinks() {
    // What kubelet makes of a ConfigMap: hidden timestamped dir, `..data` link, and
    // visible links to the files.
    let dir = TempDir::new();
    fs::create_dir(dir.path().join("..2024_01_01")).unwrap();
    dir.write("..2024_01_01/web.yaml", &svc("web"));
    symlink("..2024_01_01", dir.path().join("..data")).unwrap();
    symlink("..data/web.yaml", dir.path().join("web.yaml")).unwrap();
    let (objs, errors) = load_dir(dir.path()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(objs.services.len(), 1);
}

#[test]
fn duplicate_across_files_first_file_wins() {
    let dir = TempDir::new();
    dir.write("a.yaml", &svc("web"));
    dir.write("b.yaml", &svc("web").replace("port: 80", "port: 81"));
    let (objs, errors) = load_dir(dir.path()).unwrap();
    assert_eq!(objs.services.len(), 1);
    assert_eq!(
        objs.services[0]
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()[0]
            .port,
        80
    );
    assert_eq!(errors.len(), 1);
    let line = errors[0].to_string();
    assert!(
        line.contains("b.yaml document 1 (line 1): Service default/web is already defined at ")
            && line.contains("a.yaml"),
        "{line}"
    );
}

#[test]
fn unreadable_file_is_reported_and_others_load() {
    let dir = TempDir::new();
    dir.write("a.yaml", &svc("a"));
    fs::write(
        dir.path().join("b.yaml"),
        b"kind: Service\nmetadata: {name: \xff\xfe}\n",
    )
    .unwrap();
    let (objs, errors) = load_dir(dir.path()).unwrap();
    assert_eq!(objs.services.len(), 1);
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(&errors[0], SourceError::ReadFile { path, .. } if path.ends_with("b.yaml")),
        "{:?}",
        errors[0]
    );
}

#[test]
fn missing_directory_is_an_error() {
    let dir = TempDir::new();
    let missing = dir.path().join("nope");
    let err = load_dir(&missing).unwrap_err();
    assert!(matches!(err, SourceError::ReadDir { .. }));
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(dir_fingerprint(&missing).is_err());
}

#[test]
fn fingerprint_sees_every_relevant_change_and_only_those() {
    let dir = TempDir::new();
    let a = dir.write("a.yaml", &svc("a"));
    let fp0 = dir_fingerprint(dir.path()).unwrap();
    assert_eq!(
        dir_fingerprint(dir.path()).unwrap(),
        fp0,
        "stable when nothing changed"
    );

    // Same size, and the mtime put back: only the contents differ.
    let mtime = fs::metadata(&a).unwrap().modified().unwrap();
    fs::write(&a, svc("b")).unwrap();
    fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let fp1 = dir_fingerprint(dir.path()).unwrap();
    assert_ne!(fp1, fp0);

    // Only the mtime changes (touch).
    fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH)
        .unwrap();
    let fp2 = dir_fingerprint(dir.path()).unwrap();
    assert_ne!(fp2, fp1);

    // Files load_dir ignores do not count.
    dir.write(".a.yaml.swp", "x");
    dir.write("notes.txt", "x");
    assert_eq!(dir_fingerprint(dir.path()).unwrap(), fp2);

    // A new manifest, then its removal.
    let b = dir.write("b.json", "{}");
    let fp3 = dir_fingerprint(dir.path()).unwrap();
    assert_ne!(fp3, fp2);
    fs::remove_file(b).unwrap();
    assert_eq!(dir_fingerprint(dir.path()).unwrap(), fp2);

    // A rename with identical contents.
    fs::rename(&a, dir.path().join("c.yaml")).unwrap();
    assert_ne!(dir_fingerprint(dir.path()).unwrap(), fp2);
}
