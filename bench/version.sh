#!/usr/bin/env bash
# bench/version.sh: gantry version + gantry tags on a 10,000-commit repository
# against `git log` over the same commits, side by side in one run.
# Goal: version + tags within 2x of git log.
#
# Environment: GANTRY (default bin/gantry), BENCH_COMMITS (default 10000),
# BENCH_ROUNDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
GANTRY="${GANTRY:-$PWD/bin/gantry}"
COMMITS="${BENCH_COMMITS:-10000}"
ROUNDS="${BENCH_ROUNDS:-5}"

work="$(mktemp -d)"
trap '[ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT; echo "bench: work dir $work"
repo="$work/repo"
git init -q -b main "$repo"

# A linear history written with git fast-import (seconds, not minutes): a mix
# of feat, fix and chore commits, some with bodies, no version tag (the worst
# case: the walk reads every commit, as git log does).
echo "bench: writing a ${COMMITS}-commit repository"
{
	for ((i = 0; i < COMMITS; i++)); do
		if ((i % 10 == 0)); then
			msg="feat(shop): add feature number $i to the checkout flow"
		elif ((i % 3 == 0)); then
			msg=$'fix: handle the edge case '"$i"$' in price rounding\n\nThe rounding of prices in cents went wrong for\nsome currencies; this fixes it.'
		else
			msg="chore: routine maintenance $i"
		fi
		printf 'commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n' \
			$((1700000000 + i)) "${#msg}" "$msg"
		printf 'M 644 inline file.txt\ndata %d\n%d\n\n' $((${#i} + 1)) "$i"
	done
} | git -C "$repo" fast-import --quiet
git -C "$repo" reset -q --hard main
git -C "$repo" gc -q

now_ms() { date +%s%3N; }
time_rounds() { # name, command...: the best of ROUNDS runs, in ms
	local name=$1 best=0 t0 t1 d
	shift
	for ((r = 0; r < ROUNDS; r++)); do
		t0=$(now_ms)
		"$@" >/dev/null || { echo "bench: $name failed" >&2; return 1; }
		t1=$(now_ms)
		d=$((t1 - t0))
		if ((best == 0 || d < best)); then best=$d; fi
	done
	echo "$best"
}
# gantry tags computes the version and then its tag set, in one process.
gantry_version_tags() { (cd "$work" && "$GANTRY" tags --repo "$repo" --output json); }
git_log() { git -C "$repo" log --format='%H %P%n%B' main; }

check="$(gantry_version_tags | tr -d '\n ')"
echo "bench: gantry tags says: ${check:0:100}..."
logged=$(git -C "$repo" log --oneline main | wc -l)

gantry_ms=$(time_rounds gantry gantry_version_tags) || exit 1
git_ms=$(time_rounds git git_log) || exit 1
ratio=$(awk -v a="$gantry_ms" -v b="$git_ms" 'BEGIN { if (b == 0) b = 1; printf "%.2f", a / b }')
verdict=met
awk -v r="$ratio" 'BEGIN { exit !(r <= 2.0) }' || verdict="NOT met"
printf '\n%-44s %8s\n' "version + tags, ${logged} commits" "best of $ROUNDS"
printf '  %-42s %6d ms\n' "gantry tags (version + tag set)" "$gantry_ms"
printf '  %-42s %6d ms\n' "git log (hash, parents, message)" "$git_ms"
printf '  %-42s %6sx  (goal <= 2x: %s)\n' "ratio gantry / git log" "$ratio" "$verdict"
