-- 0015: a stand-in for issue 17's per-tenant upstreams (another branch's 0015), so that this
-- branch's 0016 numbers on without a gap. Merging drops this file for that one.
SELECT 1;
