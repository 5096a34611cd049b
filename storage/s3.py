"""Blobs in any S3-compatible object store (AWS S3, SeaweedFS, MinIO, ...) through boto3."""

from __future__ import annotations

import io
import logging
import tempfile
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from boto3.s3.transfer import TransferConfig
from boto3.session import Session
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.hashing import CHUNK_SIZE, HashingReader, verify_stream
from storage.interfaces import (
    BLOB_PREFIX,
    EMPTY_SHA256,
    MAX_PARTS,
    MIN_PART_SIZE,
    BlobInfo,
    BlobMismatch,
    BlobNotFound,
    MultipartUpload,
    StorageError,
    UploadedPart,
    UploadNotFound,
    blob_key,
    validate_sha256,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CopySourceTypeDef

    from storage.interfaces import BlobStore, MultipartBlobStore

logger = logging.getLogger(__name__)

TMP_PREFIX = "tmp/"
# Multipart uploads (resumable pushes) live at objects/<announced sha256>/<uuid>, and stay there
# once verified: the blob key then holds a link to them rather than a copy of their bytes.
OBJECT_PREFIX = "objects/"
# User metadata of a link object at a blob key: where the bytes are, and how many there are.
LINK_META = "ahub-link"
LINK_SIZE_META = "ahub-size"
# CopyObject is a single request only up to 5 GiB; beyond that the copy itself must be multipart.
MAX_SINGLE_COPY = 5 * 1024**3

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_UPLOAD_CODES = frozenset({"NoSuchUpload", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


class S3BlobStore:
    """Blobs at s3://<bucket>/blobs/sha256/ab/cd/<sha256>; uploads staged at tmp/<uuid>.

    A blob key holds either the bytes themselves (what put() stores) or an empty link object
    whose metadata names the key of a verified multipart upload (what promote_multipart()
    writes), so promoting a pushed gigabyte costs one small PUT instead of a server-side copy.
    Every read resolves a link first; links are written only after the bytes were verified.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        multipart_threshold: int = 8 * 1024 * 1024,
        part_size: int = 8 * 1024 * 1024,
        part_workers: int = 4,
        create_bucket: bool = False,
        client: S3Client | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        if multipart_threshold < 0:
            raise ValueError("multipart_threshold must be >= 0")
        if part_workers < 1:
            raise ValueError("part_workers must be >= 1")
        self.bucket = bucket
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        # Parts of one put in flight at once: a single stream of PUTs leaves the store's and the
        # network's parallelism unused; memory stays bounded at (part_workers + 1) parts.
        self.part_workers = part_workers
        # Above this size the final copy goes through boto3's managed (multipart) copy; only
        # tests lower it, to exercise that path without writing 5 GiB.
        self._single_copy_limit = MAX_SINGLE_COPY
        self.client: S3Client = client or make_s3_client(
            endpoint_url=endpoint_url,
            access_key=access_key,
            secret_key=secret_key,
            region=region,
        )
        if create_bucket:
            self.ensure_bucket()

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, endpoint={self.client.meta.endpoint_url!r})"

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet (embedded and test setups)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES | {"NoSuchBucket"}:
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        # us-east-1 is the one region that must not be named as a location constraint.
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            # Another process created it between our HEAD and CREATE.
            if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    # --- writing ---------------------------------------------------------------------------

    def put(self, stream: IO[bytes], *, max_size: int | None = None, sha256: str | None = None) -> BlobInfo:
        """Store a stream under its sha256, holding at most part_workers + 1 parts in memory.

        1. Read up to multipart_threshold + 1 bytes. If the stream ends within that, its hash
           is already known: PUT it straight to its final key (unless that exists) and stop.
        2. Otherwise start a multipart upload and send part_size parts as they fill, several at
           once, hashing and enforcing max_size as the bytes go by. With the digest announced
           (`sha256`) the upload goes straight to the blob's key: S3 shows an object only once it
           is completed, and it is completed only after the bytes read hashed to that digest, so
           there is nothing to copy afterwards. Without it the upload goes to tmp/<uuid>, which is
           completed, copied server-side to the content-addressed key, and deleted.
        Any error aborts the multipart upload (and deletes a temp key).
        """
        if sha256 is not None:
            validate_sha256(sha256)
        reader = HashingReader(stream, max_size=max_size)
        buf = bytearray()
        # One byte past the threshold tells "small" from "large" without a second pass.
        if reader.fill(buf, self.multipart_threshold + 1):
            info = _expected(reader.info(), sha256)
            # Overwrites whatever sits at the key without being this blob (see _locate).
            if not self.exists(info.sha256):
                self.client.put_object(Bucket=self.bucket, Key=blob_key(info.sha256), Body=bytes(buf))
            return info

        key = blob_key(sha256) if sha256 is not None else f"{TMP_PREFIX}{uuid.uuid4().hex}"
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        completed = False
        try:
            parts = self._upload_parts(reader, buf, key, upload_id)
            info = _expected(reader.info(), sha256)
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            completed = True
            if sha256 is None and not self.exists(info.sha256):
                self._copy(key, blob_key(info.sha256), info.size)
            return info
        finally:
            if sha256 is None:  # the temp key has served its purpose once copied
                self._discard_upload(key, upload_id, completed=completed)
            elif not completed:
                self._abort_quietly(key, upload_id)

    def _upload_parts(
        self, reader: HashingReader, buf: bytearray, key: str, upload_id: str
    ) -> list[CompletedPartTypeDef]:
        """Read the stream part by part in this thread (hashing it in order) and PUT the parts
        from a pool, at most part_workers at a time."""
        in_flight: deque[Future[CompletedPartTypeDef]] = deque()
        parts: list[CompletedPartTypeDef] = []
        number = 0
        with ThreadPoolExecutor(max_workers=self.part_workers, thread_name_prefix="s3-part") as pool:
            try:
                while True:
                    at_end = reader.fill(buf, self.part_size)
                    if buf:
                        if number == MAX_PARTS:
                            # At the default 8 MiB parts that is ~78 GiB, far above any sane max_size.
                            raise StorageError(
                                f"stream needs more than {MAX_PARTS} parts of {self.part_size} bytes; raise part_size"
                            )
                        if len(buf) <= self.part_size:
                            # Hand the buffer itself to botocore rather than copying a whole part.
                            body, buf = buf, bytearray()
                        else:
                            body = buf[: self.part_size]
                            del buf[: self.part_size]
                        number += 1
                        if len(in_flight) >= self.part_workers:
                            parts.append(in_flight.popleft().result())
                        in_flight.append(pool.submit(self._upload_part, key, upload_id, number, body))
                        del body  # the pool holds the part only until it is sent
                    if at_end and not buf:
                        break
                while in_flight:
                    parts.append(in_flight.popleft().result())
            finally:
                for future in in_flight:
                    future.cancel()
        return parts

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytearray) -> CompletedPartTypeDef:
        resp = self.client.upload_part(
            # botocore takes a bytearray as a blob; the stubs list only bytes, str and file objects.
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,  # type: ignore[arg-type]
        )
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        # Best effort: a failure here must not hide the original error; abort_stale_uploads sweeps.
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:
            logger.warning("could not abort upload %s of %s", upload_id, key, exc_info=True)

    def _copy(self, src: str, dst: str, size: int) -> None:
        source: CopySourceTypeDef = {"Bucket": self.bucket, "Key": src}
        if size <= self._single_copy_limit:
            self.client.copy_object(Bucket=self.bucket, Key=dst, CopySource=source)
            return
        # boto3's managed copy splits the copy into UploadPartCopy requests server-side.
        self.client.copy(
            source,
            self.bucket,
            dst,
            Config=TransferConfig(
                multipart_threshold=self._single_copy_limit,
                multipart_chunksize=max(self.part_size, 64 * 1024 * 1024),
            ),
        )

    def _discard_upload(self, tmp_key: str, upload_id: str, *, completed: bool) -> None:
        # Best effort: a failure here must not hide the original error; GC sweeps leftovers
        # through cleanup_temp().
        try:
            if completed:
                self.client.delete_object(Bucket=self.bucket, Key=tmp_key)
            else:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=tmp_key, UploadId=upload_id)
        except Exception:
            logger.warning("could not clean up temp upload %s", tmp_key, exc_info=True)

    # --- reading ---------------------------------------------------------------------------

    def open(self, sha256: str) -> BinaryIO:
        key = blob_key(sha256)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            linked = _link_of(resp)
            if linked is not None:
                resp["Body"].close()
                key = linked[0]
                resp = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            _raise_not_found(exc, sha256)
            raise
        raw = _S3ObjectReader(self.client, self.bucket, key, resp["ContentLength"], resp["Body"])
        return io.BufferedReader(raw, buffer_size=CHUNK_SIZE)

    def _locate(self, sha256: str, *, check_link: bool = False) -> tuple[str, int]:
        """The key that holds the blob's bytes (its own, or the one its link names) and its size;
        raises BlobNotFound.

        An empty object at a non-empty blob's key is never that blob (it is what a link looks like
        whose metadata was lost), so it counts as missing. With check_link, a link whose bytes are
        gone or of another size counts as missing too (one more HEAD): decisions to reuse a blob
        instead of storing it make that check, reads need not (their GET fails anyway).
        """
        key = blob_key(sha256)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            _raise_not_found(exc, sha256)
            raise
        link = _link_of(head)
        if link is None:
            if head["ContentLength"] == 0 and sha256 != EMPTY_SHA256:
                raise BlobNotFound(f"blob {sha256} is an empty object, not its bytes")
            return key, head["ContentLength"]
        if check_link and self._object_size(link[0]) != link[1]:
            raise BlobNotFound(f"blob {sha256} links to {link[0]}, which does not hold its {link[1]} bytes")
        return link

    def _object_size(self, key: str) -> int | None:
        try:
            size: int = self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise
        return size

    def read_range(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end})")
        key, size = self._locate(sha256)
        if start >= min(end, size):
            # An empty slice; an empty HTTP range cannot be expressed.
            return iter(())
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        except ClientError as exc:
            _raise_not_found(exc, sha256)
            raise
        return _iter_body(resp["Body"])

    def size(self, sha256: str) -> int:
        return self._locate(sha256)[1]

    def exists(self, sha256: str) -> bool:
        """Whether the blob's bytes are stored: a link counts only when what it names is there."""
        try:
            self._locate(sha256, check_link=True)
        except BlobNotFound:
            return False
        return True

    def delete(self, sha256: str) -> None:
        """Remove the blob key, then the bytes it links to (in that order, so no link is ever
        left pointing at nothing). Whatever sits at the key goes, a broken object included."""
        key = blob_key(sha256)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return  # deleting a missing blob is not an error
            raise
        self.client.delete_object(Bucket=self.bucket, Key=key)
        if (link := _link_of(head)) is not None:
            self.client.delete_object(Bucket=self.bucket, Key=link[0])

    def verify(self, sha256: str) -> str | None:
        try:
            self._locate(sha256, check_link=True)
            f = self.open(sha256)
        except BlobNotFound as exc:
            return str(exc) if self._object_size(blob_key(sha256)) is not None else "missing"
        with f:
            return verify_stream(f, sha256)

    def presigned_url(self, sha256: str, *, filename: str | None = None, expires: int = 300) -> str | None:
        """A GET URL valid for expires seconds of the key that holds the blob's bytes (resolving
        a link costs one HEAD); a missing blob gets a URL that answers 404."""
        try:
            key, _ = self._locate(sha256)
        except BlobNotFound:
            key = blob_key(sha256)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = content_disposition(filename)
        url: str = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
        return url

    # --- garbage collection ----------------------------------------------------------------

    def iter_blobs(self) -> Iterator[tuple[str, datetime]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=BLOB_PREFIX):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                sha256 = key.rsplit("/", 1)[-1]
                # Only objects at their own content-addressed key are blobs.
                try:
                    if blob_key(sha256) != key:
                        continue
                except ValueError:
                    continue
                yield sha256, obj["LastModified"].astimezone(UTC)

    def abort_stale_uploads(self, older_than: timedelta) -> int:
        """Abort put()'s multipart uploads (under tmp/, or at a blob key when the digest was
        announced) started more than older_than ago; return the count.

        A put still streaming is itself such an upload, so older_than must exceed the longest
        upload you expect (hours, not seconds).
        """
        cutoff = datetime.now(UTC) - older_than
        stale: list[tuple[str, str]] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for prefix in (TMP_PREFIX, BLOB_PREFIX):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        stale.append((upload["Key"], upload["UploadId"]))
        # Collected first, then aborted: aborting while paging would shift the listing under us.
        for key, upload_id in stale:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _error_code(exc) != "NoSuchUpload":  # finished or aborted meanwhile
                    raise
        return len(stale)

    def cleanup_temp(self, older_than: timedelta) -> int:
        """Remove tmp/ keys and multipart uploads older than older_than; return the count.

        Temp keys outlive a put only when the process died between completing the upload and
        deleting it.
        """
        removed = self.abort_stale_uploads(older_than)
        cutoff = datetime.now(UTC) - older_than
        stale: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=TMP_PREFIX):
            stale.extend(obj["Key"] for obj in page.get("Contents", []) if obj["LastModified"] < cutoff)
        # DeleteObjects takes at most 1000 keys per request.
        for i in range(0, len(stale), 1000):
            batch = stale[i : i + 1000]
            resp = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            if errors := resp.get("Errors"):
                raise RuntimeError(f"could not delete temp keys: {errors[:5]}")
        return removed + len(stale)

    # --- multipart uploads -----------------------------------------------------------------
    # Clients PUT parts straight to presigned UploadPart URLs of an upload at
    # objects/<announced sha256>/<uuid>; the hub completes it there and reads it back to verify
    # its sha256. Only then does it write the link at the content-addressed key, so a blob key
    # never leads to unverified bytes, and the verified bytes are never copied.

    def start_multipart(self, sha256: str) -> MultipartUpload:
        key = f"{OBJECT_PREFIX}{validate_sha256(sha256)}/{uuid.uuid4().hex}"
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        return MultipartUpload(key=key, upload_id=upload_id)

    def part_upload_url(self, upload: MultipartUpload, number: int, *, expires: int = 3600) -> str | None:
        url: str = self.client.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self.bucket, "Key": upload.key, "UploadId": upload.upload_id, "PartNumber": number},
            ExpiresIn=expires,
        )
        return url

    def put_part(self, upload: MultipartUpload, number: int, stream: BinaryIO, *, size: int) -> UploadedPart:
        """Relay a part through the hub (clients that cannot reach the S3 endpoint); it is spooled
        to disk first because signing needs a seekable body."""
        with tempfile.SpooledTemporaryFile(max_size=CHUNK_SIZE) as spool:
            remaining = size
            while remaining > 0:
                chunk = stream.read(min(remaining, CHUNK_SIZE))
                if not chunk:
                    raise StorageError(f"part {number} ended after {size - remaining} of {size} bytes")
                spool.write(chunk)
                remaining -= len(chunk)
            spool.seek(0)
            try:
                resp = self.client.upload_part(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, PartNumber=number, Body=spool
                )
            except ClientError as exc:
                _raise_no_upload(exc, upload)
                raise
        return UploadedPart(number=number, size=size, etag=resp["ETag"])

    def list_parts(self, upload: MultipartUpload) -> list[UploadedPart]:
        # SeaweedFS lists every copy of a part sent twice; the newest one (the last listed, unless
        # an earlier one is strictly newer) is the one completion takes.
        latest: dict[int, tuple[datetime, UploadedPart]] = {}
        marker = 0
        try:
            while True:
                resp = self.client.list_parts(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id, PartNumberMarker=marker
                )
                for p in resp.get("Parts", []):
                    part = UploadedPart(number=p["PartNumber"], size=p["Size"], etag=p["ETag"])
                    seen = latest.get(part.number)
                    if seen is None or p["LastModified"] >= seen[0]:
                        latest[part.number] = (p["LastModified"], part)
                if not resp.get("IsTruncated"):
                    break
                marker = resp["NextPartNumberMarker"]
        except ClientError as exc:
            _raise_no_upload(exc, upload)
            raise
        return [latest[number][1] for number in sorted(latest)]

    def complete_multipart(self, upload: MultipartUpload, parts: Sequence[UploadedPart]) -> int:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
            )
        except ClientError as exc:
            if _error_code(exc) not in _NO_UPLOAD_CODES:
                raise
            # Completed by an earlier call whose answer was lost: the staged object is there.
        size = self.staged_size(upload)
        if size is None:
            raise UploadNotFound(f"no such upload: {upload.upload_id}")
        return size

    def staged_size(self, upload: MultipartUpload) -> int | None:
        try:
            size: int = self.client.head_object(Bucket=self.bucket, Key=upload.key)["ContentLength"]
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise
        return size

    def open_multipart(self, upload: MultipartUpload) -> BinaryIO:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=upload.key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise UploadNotFound(f"upload {upload.upload_id} is not assembled") from None
            raise
        raw = _S3ObjectReader(self.client, self.bucket, upload.key, resp["ContentLength"], resp["Body"])
        return io.BufferedReader(raw, buffer_size=CHUNK_SIZE)

    def promote_multipart(self, upload: MultipartUpload, sha256: str) -> bool:
        """Link the blob key to the verified upload; when the blob exists already (or another
        promotion links it first), drop the upload instead."""
        key = blob_key(sha256)
        size = self.staged_size(upload)
        if size is None:
            raise UploadNotFound(f"upload {upload.upload_id} is not assembled")
        try:
            holder, _ = self._locate(sha256, check_link=True)
        except BlobNotFound:
            holder = None
            if self._object_size(key) is not None:
                # A broken object (an empty one, a link to nothing) holds the key: the verified
                # bytes replace it rather than deduplicate against it.
                self.client.delete_object(Bucket=self.bucket, Key=key)
        if holder is not None:
            if holder != upload.key:  # other bytes are the blob already; a retried promotion keeps its own
                self._drop_upload(upload)
            return False
        if _announced_sha256(upload.key) != sha256:
            # A link may lead only to bytes staged for that very blob (objects/<sha256>/...).
            raise StorageError(f"upload {upload.key} was not staged for blob {sha256}")
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=b"",
                Metadata={LINK_META: upload.key, LINK_SIZE_META: str(size)},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _error_code(exc) not in _PRECONDITION_CODES:
                raise
            self._drop_upload(upload)  # another promotion linked the blob first
            return False
        return True

    def abort_multipart(self, upload: MultipartUpload) -> None:
        """Abort the upload and delete its assembled object, unless a blob links to it."""
        if self._is_linked(upload.key):
            return
        self._drop_upload(upload)

    def _drop_upload(self, upload: MultipartUpload) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id)
        except ClientError as exc:
            if _error_code(exc) not in _NO_UPLOAD_CODES:
                raise
        self.client.delete_object(Bucket=self.bucket, Key=upload.key)

    def _is_linked(self, key: str) -> bool:
        """Whether the blob the key announces is a link to this very key."""
        sha256 = _announced_sha256(key)
        if sha256 is None:
            return False
        try:
            return self._locate(sha256)[0] == key
        except BlobNotFound:
            return False

    def abort_stale_multiparts(self, older_than: timedelta) -> int:
        """Abort uploads, and delete assembled objects no blob links to, begun more than
        older_than ago (under objects/)."""
        cutoff = datetime.now(UTC) - older_than
        stale: list[MultipartUpload] = []
        prefix = OBJECT_PREFIX
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            stale.extend(
                MultipartUpload(key=u["Key"], upload_id=u["UploadId"])
                for u in page.get("Uploads", [])
                if u["Initiated"] < cutoff
            )
        for listing in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            stale.extend(
                MultipartUpload(key=obj["Key"], upload_id="")
                for obj in listing.get("Contents", [])
                if obj["LastModified"] < cutoff and not self._is_linked(obj["Key"])
            )
        # Collected first, then removed: removing while paging would shift the listings under us.
        for upload in stale:
            if upload.upload_id:
                self.abort_multipart(upload)
            else:
                self.client.delete_object(Bucket=self.bucket, Key=upload.key)
        return len(stale)


class _S3ObjectReader(io.RawIOBase):
    """A seekable raw stream over one object: sequential reads share one GET, a seek starts a
    new ranged GET at the new position when the next read comes."""

    def __init__(self, client: S3Client, bucket: str, key: str, size: int, body: Any) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._body: Any = body
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        if pos != self._pos:
            self._close_body()
            self._pos = pos
        return pos

    def readinto(self, b: Any) -> int:
        if self._pos >= self._size:
            return 0
        if self._body is None:
            resp = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-")
            self._body = resp["Body"]
        view = memoryview(b).cast("B")
        data = self._body.read(min(len(view), self._size - self._pos))
        n = len(data)
        view[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        self._close_body()
        super().close()

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


def _iter_body(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_SIZE)
    finally:
        body.close()


def content_disposition(filename: str) -> str:
    """An attachment Content-Disposition that survives any filename (RFC 6266 / 5987).

    The quoted ASCII fallback drops what could break the header (quotes, backslashes, control
    and non-ASCII characters); filename* carries the exact name for clients that read it.
    """
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def make_s3_client(
    *,
    endpoint_url: str | None,
    access_key: str | None,
    secret_key: str | None,
    region: str,
) -> S3Client:
    config = Config(
        signature_version="s3v4",
        # Path-style (host/bucket/key): SeaweedFS and most self-hosted servers have no
        # wildcard DNS for bucket subdomains.
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 5},
        # botocore >= 1.36 adds CRC32 checksums to every upload by default, which several
        # S3-compatible servers reject; send them only where the API requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = Session()
    client: S3Client = session.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    )
    return client


def _expected(info: BlobInfo, sha256: str | None) -> BlobInfo:
    if sha256 is not None and info.sha256 != sha256:
        raise BlobMismatch(sha256, info.sha256)
    return info


def _link_of(response: Any) -> tuple[str, int] | None:
    """The (key, size) a link object names, from a HEAD or GET answer; None for plain bytes."""
    metadata = response.get("Metadata") or {}
    target = metadata.get(LINK_META)
    if target is None or not target.startswith(OBJECT_PREFIX):
        return None
    return target, int(metadata[LINK_SIZE_META])


def _announced_sha256(key: str) -> str | None:
    """The sha256 an upload at objects/<sha256>/<uuid> was announced with, else None."""
    if not key.startswith(OBJECT_PREFIX):
        return None
    sha256, _, rest = key[len(OBJECT_PREFIX) :].partition("/")
    try:
        return validate_sha256(sha256) if rest else None
    except ValueError:
        return None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _raise_no_upload(exc: ClientError, upload: MultipartUpload) -> None:
    if _error_code(exc) in _NO_UPLOAD_CODES:
        raise UploadNotFound(f"no such upload: {upload.upload_id}") from None


def _raise_not_found(exc: ClientError, sha256: str) -> None:
    if _error_code(exc) in _NOT_FOUND_CODES:
        raise BlobNotFound(f"no such blob: {sha256}") from None


if TYPE_CHECKING:
    _: type[BlobStore] = S3BlobStore
    _multipart: type[MultipartBlobStore] = S3BlobStore
