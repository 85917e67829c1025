"""A generated corpus of valid images plus many kinds of broken input.

`build_corpus(folder)` writes tar shards, a folder of image files and Parquet
files, and returns a `Corpus` that says what a correct run must report: every
broken record in the errors table with its stage and reason code, every valid
image embedded exactly once, byte copies in the exact-copies table. The
hostile-corpus test and `bench/reliability.py` (figures for the resolving
note) both use it.

Image-level kinds (bytes that are not a usable image) are planted in all three
containers: as a file, as a tar member and as a Parquet row. Container kinds
(bad tar member names, links, truncated or corrupt shards, Parquet schema
mismatches...) are planted several times in their own files. Every planted
blob is distinct (seeded), so byte-copy detection only pairs what the corpus
plants as copies on purpose.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import struct
import tarfile
import zlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from transforms.read.formats.image_files import IMAGE_EXTENSIONS
from transforms.records import make_record_id

# The corpus run must set these caps (`max_image_pixels`, `max_file_bytes`) so
# that `over_cap` and the oversized files are rejected; valid images stay well
# below them.
MAX_IMAGE_PIXELS = 1_000_000
MAX_FILE_BYTES = 1_000_000

#: Kinds that are valid input a correct run must read (not bad input).
VALID_KINDS = frozenset({"duplicate_key", "byte_copy_of_valid", "jpeg_other_extension",
                         "avif", "symlinked_subdirectory", "spark_parquet_folder",
                         "folder_given_twice"})

READ, DECODE = "read", "decode"


# --- valid images --------------------------------------------------------

def smooth_image(seed: int, size=(96, 64), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC).convert(mode)


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _exif_rotated_jpeg(seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return encode(smooth_image(seed), "JPEG", exif=exif.tobytes())


def _animated_gif(seed: int) -> bytes:
    frames = [smooth_image(seed + i) for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _png16(seed: int) -> bytes:
    arr = np.asarray(smooth_image(seed).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(arr), "PNG")


def _palette_transparent_gif(seed: int) -> bytes:
    img = smooth_image(seed).convert("P", palette=Image.Palette.ADAPTIVE)
    return encode(img, "GIF", transparency=0)


#: Valid variants, cycled over the valid images: each must be embedded.
VALID_VARIANTS: dict[str, Callable[[int], bytes]] = {
    "jpeg": lambda s: encode(smooth_image(s)),
    "png": lambda s: encode(smooth_image(s), "PNG"),
    "png_rgba": lambda s: encode(smooth_image(s, mode="RGBA"), "PNG"),
    "png_16bit": _png16,
    "jpeg_cmyk": lambda s: encode(smooth_image(s, mode="CMYK"), "JPEG"),
    "jpeg_grey": lambda s: encode(smooth_image(s, mode="L"), "JPEG"),
    "jpeg_exif_rotated": _exif_rotated_jpeg,
    "gif_animated": _animated_gif,
    "gif_transparent": _palette_transparent_gif,
    "webp": lambda s: encode(smooth_image(s), "WEBP"),
    "bmp": lambda s: encode(smooth_image(s), "BMP"),
    "tiff": lambda s: encode(smooth_image(s), "TIFF"),
}


def valid_image(seed: int) -> bytes:
    names = sorted(VALID_VARIANTS)
    return VALID_VARIANTS[names[seed % len(names)]](seed)


# --- broken image bytes ----------------------------------------------------

def _png_with_size(seed: int, width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` (valid CRC)."""
    data = bytearray(encode(smooth_image(seed), "PNG"))
    i = data.index(b"IHDR")
    data[i + 4:i + 12] = struct.pack(">II", width, height)
    data[i + 17:i + 21] = struct.pack(">I", zlib.crc32(bytes(data[i:i + 17])) & 0xFFFFFFFF)
    return bytes(data)


def _png_bad_idat(seed: int) -> bytes:
    data = bytearray(encode(smooth_image(seed), "PNG"))
    i = data.index(b"IDAT")
    n = struct.unpack(">I", data[i - 4:i])[0]
    data[i + 4 + n // 4:i + 4 + n // 2] = bytes(n // 2 - n // 4)  # zeroed compressed data
    return bytes(data)


def _half(blob: bytes) -> bytes:
    return blob[:len(blob) // 2]


def _bmp_zeroed_header(seed: int) -> bytes:
    data = encode(smooth_image(seed), "BMP")
    return data[:14] + bytes(40) + data[54:]  # DIB header zeroed: size 0 is no known type


def _over_cap(seed: int) -> bytes:
    """A real, small-file image with more pixels than `MAX_IMAGE_PIXELS`."""
    return encode(smooth_image(seed, size=(1250, 1000)), "PNG")


#: name -> (make(seed) -> bytes, stage, reason). The stage/reason a correct
#: run reports for these bytes whatever container holds them.
BROKEN_IMAGES: dict[str, tuple[Callable[[int], bytes], str, str]] = {
    "zero_bytes": (lambda s: b"", READ, "empty_file"),
    "truncated_jpeg": (lambda s: _half(encode(smooth_image(s))), DECODE, "truncated"),
    "truncated_png": (lambda s: _half(encode(smooth_image(s), "PNG")), DECODE, "truncated"),
    "truncated_gif": (lambda s: _half(encode(smooth_image(s), "GIF")), DECODE, "truncated"),
    "truncated_tiff": (lambda s: _half(encode(smooth_image(s), "TIFF")), DECODE, "truncated"),
    "png_corrupt_data": (_png_bad_idat, DECODE, "corrupt"),
    "bmp_corrupt_header": (_bmp_zeroed_header, DECODE, "corrupt"),
    "html_named_jpg": (lambda s: f"<html><body>404 not found {s}</body></html>".encode(),
                       DECODE, "unidentified"),
    "random_bytes": (lambda s: np.random.default_rng(s).bytes(700), DECODE, "unidentified"),
    "png_zero_width": (lambda s: _png_with_size(s, 0, 64), DECODE, "unidentified"),
    "format_not_allowed_tga": (lambda s: encode(smooth_image(s), "TGA"), DECODE, "unidentified"),
    "svg": (lambda s: f'<svg xmlns="http://www.w3.org/2000/svg" id="{s}"/>'.encode(),
            DECODE, "unsupported_format"),
    "pdf": (lambda s: f"%PDF-1.4 {s}".encode(), DECODE, "unsupported_format"),
    "heic": (lambda s: b"\0\0\0\x18ftypheic" + struct.pack(">I", s) + b"mif1heic",
             DECODE, "unsupported_format"),
    "psd": (lambda s: b"8BPS" + struct.pack(">I", s) + bytes(32), DECODE, "unsupported_format"),
    "decompression_bomb": (lambda s: _png_with_size(s, 100_000, 100_000), DECODE, "too_large"),
    "over_pixel_cap": (_over_cap, DECODE, "too_large"),
}


# --- the corpus ------------------------------------------------------------

@dataclasses.dataclass
class Corpus:
    """What was planted, and what a correct run must report.

    Records are named by `(source_uri, key)` as the reader names them (a
    tar sample key, a Parquet row's key, a file's uri); shard-level errors
    have key None.
    """

    inputs: list[str]
    expected_errors: list[tuple[str, str | None, str, str]] = dataclasses.field(
        default_factory=list)  # (source_uri, key, stage, reason)
    expected_embedded: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    expected_copies: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    expected_skipped: list[tuple[str, str]] = dataclasses.field(
        default_factory=list)  # (source_uri, reason) of paths found but not read
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)  # kind -> times planted

    def plant(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    @property
    def broken_records(self) -> int:
        return sum(1 for e in self.expected_errors if e[1] is not None)

    @property
    def records(self) -> int:
        """Records a correct reader finds (embedded + copies + record errors)."""
        return len(self.expected_embedded) + len(self.expected_copies) + self.broken_records


def _tar(path: str, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    with open(path, "rb") as f:
        return f.read()


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _parquet(path: str, table: pa.Table) -> str:
    pq.write_table(table, path)
    return path


def build_corpus(folder: str, copies: int = 3, valid_per_container: int = 12) -> Corpus:
    """Writes the corpus below `folder` (tar/, files/, parquet/) and returns its manifest.

    Args:
        copies: how many times each broken kind is planted (per container
            for image-level kinds).
        valid_per_container: valid images in each of the three containers.
    """
    folder = os.path.realpath(folder)  # the run names local files by their real paths
    dirs = {d: os.path.join(folder, d) for d in ("tar", "files", "parquet")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    corpus = Corpus(inputs=[os.path.join(dirs["tar"], "*.tar"), dirs["files"],
                            os.path.join(dirs["parquet"], "*.parquet")])
    seed = iter(range(1000, 10**6))
    broken = sorted(BROKEN_IMAGES)

    # Folder of image files: valid ones, every broken kind `copies` times.
    for i in range(valid_per_container):
        path = _write(os.path.join(dirs["files"], f"valid-{i:03d}.jpg"), valid_image(next(seed)))
        corpus.expected_embedded.append((path, path))
    for kind in broken:
        make, stage, reason = BROKEN_IMAGES[kind]
        for c in range(copies):
            path = _write(os.path.join(dirs["files"], f"{kind}-{c}.jpg"), make(next(seed)))
            corpus.expected_errors.append((path, path, stage, reason))
            corpus.plant(kind)
    for c in range(copies):
        path = _write(os.path.join(dirs["files"], f"caption-{c}.txt"), b"not an input: skipped")
        corpus.expected_skipped.append((path, "not_an_input"))
        corpus.plant("sidecar_not_an_input")

    # Tar shard 0: valid images and image-level broken kinds, img2dataset layout.
    uri = os.path.join(dirs["tar"], "00000.tar")
    members: list = []
    n = 0
    for i in range(valid_per_container):
        key = f"{n:06d}"
        n += 1
        members += [(f"{key}.jpg", valid_image(next(seed))), (f"{key}.json", b"{}")]
        corpus.expected_embedded.append((uri, key))
    for kind in broken:
        make, stage, reason = BROKEN_IMAGES[kind]
        for _ in range(copies):
            key = f"{n:06d}"
            n += 1
            members += [(f"{key}.jpg", make(next(seed))), (f"{key}.json", b"{}")]
            corpus.expected_errors.append((uri, key, stage, reason))
            corpus.plant(kind)
    for _ in range(copies):
        key = f"{n:06d}"
        n += 1
        members.append((f"{key}.jpg", _oversized(next(seed))))
        corpus.expected_errors.append((uri, key, READ, "file_too_large"))
        corpus.plant("tar_member_over_max_file_bytes")
    _tar(uri, members)

    # Tar shards 1..copies: member-level problems, each once per shard.
    for s in range(1, copies + 1):
        uri = os.path.join(dirs["tar"], f"{s:05d}.tar")
        good = [valid_image(next(seed)) for _ in range(4)]
        members = [
            ("a.jpg", good[0]),
            ("../escape.jpg", valid_image(next(seed))),
            ("/abs/path.jpg", valid_image(next(seed))),
            _link("symlink.jpg", "a.jpg"),
            _link("hardlink.jpg", "a.jpg", tarfile.LNKTYPE),
            ("meta-only.json", b"{}"),
            ("two.jpg", good[1]), ("two.png", encode(smooth_image(next(seed)), "PNG")),
            ("dup.jpg", good[2]), ("b.jpg", good[3]),
            ("dup.jpg", valid_image(next(seed))),  # same key again, not adjacent
            ("meta-only.txt", b"again"),  # an image-less key again, not adjacent
        ]
        _tar(uri, members)
        corpus.expected_embedded += [(uri, "a"), (uri, "two"), (uri, "dup"), (uri, "b"),
                                     (uri, "dup")]
        corpus.plant("duplicate_key")
        corpus.expected_errors.append((uri, "meta-only", READ, "no_image_member"))
        corpus.plant("sample_without_image_key_repeated")
        for kind, key, reason in (
                ("member_name_dotdot", "../escape", "bad_member_name"),
                ("member_name_absolute", "/abs/path", "bad_member_name"),
                ("member_symlink", "symlink", "bad_member_type"),
                ("member_hardlink", "hardlink", "bad_member_type"),
                ("sample_without_image", "meta-only", "no_image_member"),
                ("sample_with_two_images", "two", "extra_image_member")):
            corpus.expected_errors.append((uri, key, READ, reason))
            corpus.plant(kind)

    # Broken shards: the records before the damage are read, the shard is reported.
    for s in range(copies):
        imgs = [valid_image(next(seed)) for _ in range(3)]
        names = [f"k{i}.jpg" for i in range(3)]
        uri = os.path.join(dirs["tar"], f"corrupt-header-{s}.tar")
        raw = bytearray(_tar(uri, list(zip(names, imgs))))
        second = -(-len(imgs[0]) // 512) * 512 + 512  # offset of the 2nd header
        raw[second:second + 100] = bytes([0x13]) * 100
        _write(uri, bytes(raw))
        corpus.expected_embedded.append((uri, "k0"))
        corpus.expected_errors.append((uri, None, READ, "shard_truncated"))
        corpus.plant("tar_corrupt_header_after_first")

        uri = os.path.join(dirs["tar"], f"cut-in-member-{s}.tar")
        raw = _tar(uri, list(zip(names, [valid_image(next(seed)) for _ in range(3)])))
        with tarfile.open(uri) as t:
            third_data = t.getmembers()[2].offset_data
        _write(uri, raw[:third_data + 100])
        corpus.expected_embedded += [(uri, "k0"), (uri, "k1")]
        corpus.expected_errors += [(uri, "k2", READ, "truncated"),
                                   (uri, None, READ, "shard_truncated")]
        corpus.plant("tar_cut_inside_member")

        uri = os.path.join(dirs["tar"], f"no-end-blocks-{s}.tar")
        raw = _tar(uri, [("k0.jpg", valid_image(next(seed)))])
        with tarfile.open(uri) as t:
            m = t.getmembers()[0]
        _write(uri, raw[:m.offset_data + -(-m.size // 512) * 512])
        corpus.expected_embedded.append((uri, "k0"))
        corpus.expected_errors.append((uri, None, READ, "shard_truncated"))
        corpus.plant("tar_missing_end_blocks")

        uri = _write(os.path.join(dirs["tar"], f"not-a-tar-{s}.tar"),
                     np.random.default_rng(s).bytes(3000))
        corpus.expected_errors.append((uri, None, READ, "corrupt"))
        corpus.plant("tar_not_an_archive")

        uri = _write(os.path.join(dirs["tar"], f"empty-{s}.tar"), b"")
        corpus.expected_errors.append((uri, None, READ, "empty_file"))
        corpus.plant("tar_empty_file")

    # Parquet: HF struct layout (key = path) with valid and broken rows, and
    # binary layout (key = row number) with the same broken kinds.
    struct_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows, uri = [], os.path.join(dirs["parquet"], "hf-00000.parquet")
    for i in range(valid_per_container):
        rows.append({"bytes": valid_image(next(seed)), "path": f"valid-{i}.jpg"})
        corpus.expected_embedded.append((uri, f"valid-{i}.jpg"))
    for kind in broken:
        make, stage, reason = BROKEN_IMAGES[kind]
        for c in range(copies):
            rows.append({"bytes": make(next(seed)), "path": f"{kind}-{c}.jpg"})
            corpus.expected_errors.append((uri, f"{kind}-{c}.jpg", stage, reason))
            corpus.plant(kind)
    for c in range(copies):
        rows.append(None)  # a null struct
        corpus.expected_errors.append((uri, str(len(rows) - 1), READ, "missing_bytes"))
        corpus.plant("parquet_null_row")
    _parquet(uri, pa.table({"image": pa.array(rows, struct_type)}))

    uri = os.path.join(dirs["parquet"], "binary-00000.parquet")
    blobs = [valid_image(next(seed)) for _ in range(4)]
    corpus.expected_embedded += [(uri, str(i)) for i in range(4)]
    for c in range(copies):
        blobs.append(None)
        corpus.expected_errors.append((uri, str(len(blobs) - 1), READ, "missing_bytes"))
        corpus.plant("parquet_null_row")
    _parquet(uri, pa.table({"image": pa.array(blobs, pa.binary())}))

    for s in range(copies):
        good = pa.array([valid_image(next(seed))], pa.binary())
        for kind, name, table_or_bytes, reason in (
                ("parquet_renamed_column", f"renamed-{s}.parquet",
                 pa.table({"jpeg": good}), "schema_mismatch"),
                ("parquet_string_column", f"string-{s}.parquet",
                 pa.table({"image": pa.array([f"base64-{s}"])}), "schema_mismatch"),
                ("parquet_not_parquet", f"garbage-{s}.parquet",
                 np.random.default_rng(100 + s).bytes(2000), "corrupt"),
                ("parquet_cut_footer", f"cut-{s}.parquet", None, "corrupt"),
                ("parquet_empty_file", f"empty-{s}.parquet", b"", "empty_file")):
            path = os.path.join(dirs["parquet"], name)
            if isinstance(table_or_bytes, pa.Table):
                _parquet(path, table_or_bytes)
            elif table_or_bytes is None:
                _parquet(path, pa.table({"image": good}))
                with open(path, "rb") as f:
                    whole = f.read()
                _write(path, whole[:-20])
            else:
                _write(path, table_or_bytes)
            corpus.expected_errors.append((path, None, READ, reason))
            corpus.plant(kind)

    _plant_listing_kinds(corpus, folder, dirs, seed, copies)
    _plant_parquet_kinds(corpus, dirs["parquet"], seed, copies)
    for c in range(copies):
        uri = os.path.join(dirs["tar"], f"gzip-{c}.tar")
        _tar(uri, [("k0.jpg", valid_image(next(seed)))])
        with open(uri, "rb") as f:
            _write(uri, gzip.compress(f.read(), mtime=0))
        corpus.expected_errors.append((uri, None, READ, "corrupt"))
        corpus.plant("tar_gzip_compressed")

    # Byte copies across containers: of a valid image (one embedded, the other
    # a copy) and of a broken one (both reported with the same reason).
    for c in range(copies):
        blob = valid_image(next(seed))
        pair = [_write(os.path.join(dirs["files"], f"copy-{c}-{x}.jpg"), blob) for x in "ab"]
        pair.sort(key=lambda path: make_record_id(path, "file"))  # smallest id is embedded
        corpus.expected_embedded.append((pair[0], pair[0]))
        corpus.expected_copies.append((pair[1], pair[1]))
        corpus.plant("byte_copy_of_valid")
        blob = _half(encode(smooth_image(next(seed))))
        for name in (f"broken-copy-a-{c}.jpg", f"broken-copy-b-{c}.jpg"):
            path = _write(os.path.join(dirs["files"], name), blob)
            corpus.expected_errors.append((path, path, DECODE, "truncated"))
        corpus.plant("byte_copy_of_broken")
    return corpus


def compare_run(corpus: Corpus, run_folder: str) -> dict[str, int]:
    """Checks a published run of `corpus` against its manifest.

    Returns the figures of the resolving note; raises AssertionError naming
    every record that is missing, extra, duplicated or has the wrong reason.
    """
    import collections

    def table(name: str, columns=None) -> pa.Table:
        path = os.path.join(run_folder, name)
        if os.path.isdir(path):
            return pa.concat_tables(pq.read_table(os.path.join(path, f), columns=columns)
                                    for f in sorted(os.listdir(path)) if f.endswith(".parquet"))
        return pq.read_table(path, columns=columns)

    embedded = table("embeddings", ["record_id", "source_uri", "key"]).to_pylist()
    errors = table("errors.parquet").to_pylist()
    exact = table("exact_duplicates.parquet").to_pylist()
    shards = table("shards.parquet").to_pylist()
    problems = []

    def diff(what: str, got: list, want: list) -> None:
        got_c, want_c = collections.Counter(got), collections.Counter(want)
        missing, extra = want_c - got_c, got_c - want_c
        if missing:
            problems.append(f"{what}: missing {sorted(missing.elements(), key=str)[:20]}")
        if extra:
            problems.append(f"{what}: unexpected {sorted(extra.elements(), key=str)[:20]}")

    diff("embedded", [(r["source_uri"], r["key"]) for r in embedded], corpus.expected_embedded)
    diff("errors", [(r["source_uri"], r["key"] if r["record_id"] else None, r["stage"],
                     r["reason"]) for r in errors], corpus.expected_errors)
    ids_by_name = collections.defaultdict(list)
    for r in embedded:
        ids_by_name[(r["source_uri"], r["key"])].append(r["record_id"])
    copy_ids = [r["record_id_b"] for r in exact]
    want_copy_ids = [make_record_id(uri, "file") for uri, _ in corpus.expected_copies]
    diff("exact copies", copy_ids, want_copy_ids)
    all_ids = ([r["record_id"] for r in embedded] + copy_ids
               + [r["record_id"] for r in errors if r["record_id"]])
    duplicated = len(all_ids) - len(set(all_ids))
    if duplicated:
        problems.append(f"{duplicated} record ids appear more than once")
    skipped = table("skipped.parquet").to_pylist()
    diff("skipped", [(r["source_uri"], r["reason"]) for r in skipped], corpus.expected_skipped)
    records_read = sum(r["records_read"] for r in shards)
    if records_read != corpus.records:
        problems.append(f"shards say {records_read} records read, corpus has {corpus.records}")
    lost = max(0, corpus.records - len(set(all_ids)))
    if problems:
        raise AssertionError("run does not match the corpus:\n" + "\n".join(problems))
    return {"kinds_tried": len(corpus.kinds),
            "kinds_of_bad_input": len([k for k in corpus.kinds if k not in VALID_KINDS]),
            "bad_inputs_planted": sum(n for k, n in corpus.kinds.items()
                                      if k not in VALID_KINDS),
            "records_injected": corpus.records,
            "files_skipped": len(skipped),
            "broken_records": corpus.broken_records,
            "shard_level_errors": len(corpus.expected_errors) - corpus.broken_records,
            "embedded": len(embedded), "exact_copies": len(exact),
            "records_lost": lost, "records_duplicated": duplicated}


def _oversized(seed: int) -> bytes:
    """A valid JPEG padded past `MAX_FILE_BYTES` (decoders ignore bytes after EOI)."""
    blob = valid_image(seed)
    return blob + bytes(MAX_FILE_BYTES + 1 - len(blob))


def _plant_listing_kinds(corpus: Corpus, folder: str, dirs: dict[str, str], seed,
                         copies: int) -> None:
    """Paths the listing must read, refuse (an error row) or list as skipped."""
    files = dirs["files"]
    for c in range(copies):
        ext = ("jfif", "jpe", "jif")[c % 3]
        path = _write(os.path.join(files, f"other-name-{c}.{ext}"), valid_image(next(seed)))
        corpus.expected_embedded.append((path, path))
        corpus.plant("jpeg_other_extension")

        path = _write(os.path.join(files, f"photo-{c}.avif"),
                      encode(smooth_image(next(seed)), "AVIF"))
        if "avif" in IMAGE_EXTENSIONS:
            corpus.expected_embedded.append((path, path))
        else:
            corpus.expected_skipped.append((path, "unsupported_format"))
        corpus.plant("avif")

        path = _write(os.path.join(files, f"photo-{c}.heic"),
                      b"\0\0\0\x18ftypheic" + struct.pack(">I", c) + b"mif1heic")
        corpus.expected_skipped.append((path, "unsupported_format"))
        corpus.plant("heic_file")

        for ext in (".tgz", ".tar.gz"):
            path = _write(os.path.join(files, f"shard-{c}{ext}"),
                          gzip.compress(_tar(os.path.join(folder, "scratch.tar"),
                                             [("k.jpg", valid_image(next(seed)))]), mtime=0))
            corpus.expected_skipped.append((path, "unsupported_format"))
        corpus.plant("tar_gzip_named_tgz")

        path = os.path.join(files, f"fifo-{c}.jpg")
        os.mkfifo(path)
        corpus.expected_errors.append((path, path, READ, "not_a_regular_file"))
        corpus.plant("fifo_named_jpg")

        path = os.path.join(files, f"zero-{c}.jpg")
        os.symlink("/dev/zero", path)
        corpus.expected_errors.append((path, path, READ, "not_a_regular_file"))
        corpus.plant("symlink_to_dev_zero")

        path = os.path.join(files, f"dangling-{c}.jpg")
        os.symlink(os.path.join(folder, "missing", f"{c}.jpg"), path)
        corpus.expected_skipped.append((path, "dangling_symlink"))
        corpus.plant("dangling_symlink")

        path = _write(os.path.join(files, f"big-{c}.jpg"), _oversized(next(seed)))
        corpus.expected_errors.append((path, path, READ, "file_too_large"))
        corpus.plant("file_over_max_file_bytes")

        outside = os.path.join(folder, f"outside-{c}")
        os.makedirs(outside)
        path = _write(os.path.join(outside, "linked.jpg"), valid_image(next(seed)))
        os.symlink(outside, os.path.join(files, f"linked-{c}"))
        corpus.expected_embedded.append((path, path))
        corpus.plant("symlinked_subdirectory")
    os.remove(os.path.join(folder, "scratch.tar"))

    # The same folder under other spellings: read once, no byte copies of itself.
    alias = os.path.join(folder, "files-alias")
    os.symlink(files, alias)
    for spelling in (alias, files + "/./", os.path.join(dirs["tar"], "..", "files")):
        corpus.inputs.append(spelling)
        corpus.plant("folder_given_twice")


def _corrupt_page_parquet(path: str, blobs: list[bytes]) -> None:
    """Row groups of two rows; the second one's data page header overwritten."""
    pq.write_table(pa.table({"image": pa.array(blobs, pa.binary())}), path,
                   row_group_size=2, use_dictionary=False)
    offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 8)


def _plant_parquet_kinds(corpus: Corpus, folder: str, seed, copies: int) -> None:
    for c in range(copies):
        uri = os.path.join(folder, f"corrupt-page-{c}.parquet")
        _corrupt_page_parquet(uri, [valid_image(next(seed)) for _ in range(6)])
        corpus.expected_embedded += [(uri, str(r)) for r in (0, 1, 4, 5)]
        corpus.expected_errors += [(uri, str(r), READ, "corrupt") for r in (2, 3)]
        corpus.plant("parquet_corrupt_page")

        good = pa.array([valid_image(next(seed))], pa.binary())
        uri = _parquet(os.path.join(folder, f"two-image-columns-{c}.parquet"),
                       pa.Table.from_arrays([good, good], names=["image", "image"]))
        corpus.expected_errors.append((uri, None, READ, "schema_mismatch"))
        corpus.plant("parquet_two_image_columns")

        hf = pa.StructArray.from_arrays([good, pa.array([c])], names=["bytes", "path"])
        uri = _parquet(os.path.join(folder, f"path-not-string-{c}.parquet"), pa.table({"image": hf}))
        corpus.expected_errors.append((uri, None, READ, "schema_mismatch"))
        corpus.plant("parquet_struct_path_not_string")

        spark = os.path.join(folder, f"spark-{c}.parquet")  # a folder, as Spark writes
        os.makedirs(spark)
        for part in range(2):
            uri = _parquet(os.path.join(spark, f"part-0000{part}.snappy.parquet"),
                           pa.table({"image": pa.array([valid_image(next(seed))], pa.binary())}))
            corpus.expected_embedded.append((uri, "0"))
            crc = _write(os.path.join(spark, f".part-0000{part}.snappy.parquet.crc"), b"crc")
            corpus.expected_skipped.append((crc, "not_an_input"))
        corpus.expected_skipped.append((_write(os.path.join(spark, "_SUCCESS"), b""),
                                        "not_an_input"))
        corpus.plant("spark_parquet_folder")
