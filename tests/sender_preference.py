"""storescu told to propose, in every context, a file's own transfer syntax first and then the
uncompressed ones (as modalities and other archives do), through a DCMTK association profile.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pacsd.dicom.header import read_header

UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2")


def by_syntax(files) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(read_header(path).transfer_syntax, []).append(path)
    return groups


def own_syntax_first_profile(directory: Path, syntax: str, files: list[Path]) -> list[str]:
    """storescu arguments (-xf FILE PROFILE) proposing, per SOP class of `files`, one context
    [syntax, Explicit LE, Explicit BE, Implicit LE] (the syntax not repeated)."""
    syntaxes = [syntax] + [ts for ts in UNCOMPRESSED if ts != syntax]
    classes = sorted({read_header(path).sop_class_uid for path in files})
    lines = ["[[TransferSyntaxes]]", "[OwnFirst]"]
    lines += [f"TransferSyntax{i} = {ts}" for i, ts in enumerate(syntaxes, 1)]
    lines += ["[[PresentationContexts]]", "[OwnFirstContexts]"]
    lines += [f"PresentationContext{i} = {uid}\\OwnFirst" for i, uid in enumerate(classes, 1)]
    lines += ["[[Profiles]]", "[OwnFirstProfile]", "PresentationContexts = OwnFirstContexts"]
    config = directory / f"own-first-{syntax}.cfg"
    config.write_text("\n".join(lines) + "\n")
    return ["-xf", str(config), "OwnFirstProfile"]


_REFERENCE_RUN = r"""
set -e
ip link set lo up
out=$1; config=$2; profile=$3; shift 3
storescp +B +xa -od "$out" -aet REF 11112 & receiver=$!
for _ in $(seq 100); do echoscu -aec REF 127.0.0.1 11112 2>/dev/null && break; sleep 0.05; done
storescu -aec REF -xf "$config" "$profile" 127.0.0.1 11112 "$@" || true
kill $receiver
"""


def received_by_storescp(directory: Path, files) -> dict[str, tuple[str, bytes]]:
    """SOP Instance UID -> (transfer syntax, dataset bytes) as DCMTK storescp +B +xa keeps what
    storescu sends with `own_syntax_first_profile` (storescu re-encodes: odd lengths padded,
    group lengths dropped).  storescp runs in a private network namespace on its usual port."""
    from pydicom import dcmread

    from tests.stored_checks import dataset_bytes

    kept: dict[str, tuple[str, bytes]] = {}
    for index, (syntax, group) in enumerate(by_syntax(files).items()):
        out = directory / f"storescp-{index}"
        out.mkdir(parents=True)
        _, config, profile = own_syntax_first_profile(directory, syntax, group)
        subprocess.run(["unshare", "-n", "bash", "-c", _REFERENCE_RUN, "reference", str(out), config, profile,
                        *map(str, group)], capture_output=True, timeout=120)
        for received in out.iterdir():
            header = dcmread(received, stop_before_pixels=True)
            kept[str(header.SOPInstanceUID)] = (str(header.file_meta.TransferSyntaxUID), dataset_bytes(received))
    return kept
