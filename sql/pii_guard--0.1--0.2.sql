/* pii_guard--0.1--0.2.sql: the changes of version 0.2 over 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pii_guard UPDATE TO '0.2'" to load this file. \quit

-- 0.1 is released and its script is never edited: everything 0.2 changes
-- is here, and CREATE EXTENSION of 0.2 runs the 0.1 script and then this
-- one.  Each change says why.
