-- The tables and two sessions of PostgresStore 0.1.0 (schema version 1), from pg_dump --inserts;
-- tests replace the table prefix release010.

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE TABLE public.release010_locks (
    id text NOT NULL,
    token text NOT NULL,
    expires_at double precision NOT NULL
);

CREATE TABLE public.release010_meta (
    name text NOT NULL,
    value text NOT NULL
);

CREATE TABLE public.release010_sessions (
    id text NOT NULL,
    data jsonb NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    user_id text,
    idle_timeout integer
);

INSERT INTO public.release010_meta VALUES ('schema', 'hug-cookie-sessions');
INSERT INTO public.release010_meta VALUES ('version', '1');

INSERT INTO public.release010_sessions VALUES ('release-0-1-0-session-of-ada-0123456789abcd', '{"n": "1", "user": "\"ada\""}', 1767225600, 4102444800, 'ada', NULL);
INSERT INTO public.release010_sessions VALUES ('release-0-1-0-anonymous-session-0123456789a', '{"n": "2"}', 1767225600, 4102444800, NULL, NULL);

ALTER TABLE ONLY public.release010_locks
    ADD CONSTRAINT release010_locks_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.release010_meta
    ADD CONSTRAINT release010_meta_pkey PRIMARY KEY (name);

ALTER TABLE ONLY public.release010_sessions
    ADD CONSTRAINT release010_sessions_pkey PRIMARY KEY (id);

CREATE INDEX release010_sessions_by_expiry ON public.release010_sessions USING btree (expires_at);

CREATE INDEX release010_sessions_by_user ON public.release010_sessions USING btree (user_id) WHERE (user_id IS NOT NULL);

