"""Streaming A-to-B operators: data moves in bounded chunks, never whole results in memory.

Each transfer is ``source → encoder → sink``: a source yields rows or Arrow batches (a COPY
stream, a Mongo cursor, an S3 body), an encoder turns them into a format, and a sink writes
them (S3 multipart uploads completed at the end, SFTP files renamed into place, a COPY into
PostgreSQL committed at the end).
"""

from ferry.transfers.mongo_to_s3 import MongoToS3Operator
from ferry.transfers.postgres_to_s3 import PostgresToS3Operator
from ferry.transfers.s3_to_postgres import S3ToPostgresOperator
from ferry.transfers.s3_to_sftp import S3ToSFTPOperator
from ferry.transfers.sftp_to_s3 import SFTPToS3Operator

__all__ = ["MongoToS3Operator", "PostgresToS3Operator", "S3ToPostgresOperator", "S3ToSFTPOperator",
           "SFTPToS3Operator"]
