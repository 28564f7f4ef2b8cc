"""Writes a launcher jar: an empty jar whose manifest names a main class and a classpath.

`python3 launcher_jar.py JAR MAIN_CLASS LIB_DIR [HEADER: value ...]` lists every jar in LIB_DIR
(a directory beside JAR) as the Class-Path, relative to JAR as the jar spec wants, so `java -jar JAR`
(how Beam starts a job server or an expansion service) runs MAIN_CLASS. Extra headers go between
Main-Class and Class-Path. Python's zipfile, so no JDK `jar` tool is needed.
"""
import pathlib
import sys
import zipfile


def wrap(line: str) -> bytes:
    """Manifest lines are at most 72 bytes; continuation lines start with one space."""
    raw = line.encode()
    parts = [raw[:72]] + [b" " + raw[i:i + 71] for i in range(72, len(raw), 71)]
    return b"\r\n".join(parts) + b"\r\n"


def main(jar: str, main_class: str, lib_dir: str, *headers: str) -> None:
    jar_path = pathlib.Path(jar)
    jars = sorted(path.name for path in (jar_path.parent / lib_dir).glob("*.jar"))
    manifest = (wrap("Manifest-Version: 1.0") + wrap(f"Main-Class: {main_class}")
                + b"".join(wrap(header) for header in headers)
                + wrap("Class-Path: " + " ".join(f"{lib_dir}/{name}" for name in jars)) + b"\r\n")
    with zipfile.ZipFile(jar_path, "w") as launcher:
        launcher.writestr("META-INF/MANIFEST.MF", manifest)


if __name__ == "__main__":
    main(*sys.argv[1:])
