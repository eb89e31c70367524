-- 0014: a stand-in for issue 17's split zones (another branch's 0014), so that this branch's
-- 0015 numbers on without a gap. Merging drops this file for that one.
SELECT 1;
