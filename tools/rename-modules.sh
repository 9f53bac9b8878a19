#!/bin/sh
# tools/rename-modules.sh [--prose] [--move] FILE...
#
# Rewrites the Lua module names of issue 15's layout in FILEs, in place,
# from tools/module-moves.txt ("old new" a line; "old.* new.*" for a whole
# folder).  For code written against the old layout, e.g. a branch merged
# after the moves:
#   - "qmig.old" and 'qmig.old' strings (require "qmig.old",
#     require("qmig.old"), package.loaded["qmig.old"], \"qmig.old\" inside
#     a string) become the new name;
#   - file paths qmig/old.lua (lua/qmig/cloud.lua) become the new path.
# --prose also rewrites bare names in text (comments, Markdown):
#   qmig.old not followed by a letter or by ".name" (qmig.steps.spaces.create
#   is a step module, not the loader qmig.steps).
# --move also `git mv`s each FILE that is lua/qmig/<old>.lua to its new
# path (after rewriting it), creating the folder.
# Running it twice changes nothing the second time: no new name is an old one.
set -eu

here=$(dirname "$0")
map=${QMIG_MODULE_MOVES:-$here/module-moves.txt}
prose=0
move=0
while [ $# -gt 0 ]; do
  case $1 in
    --prose) prose=1; shift ;;
    --move) move=1; shift ;;
    --) shift; break ;;
    -*) echo "rename-modules.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ]; then
  echo "usage: tools/rename-modules.sh [--prose] [--move] FILE..." >&2
  exit 2
fi
[ -r "$map" ] || { echo "rename-modules.sh: cannot read $map" >&2; exit 2; }

for f in "$@"; do
  [ -f "$f" ] || { echo "rename-modules.sh: $f: not a file" >&2; exit 2; }
  MAP=$map PROSE=$prose perl -0777 -i -pe '
    BEGIN {
      open(my $fh, "<", $ENV{MAP}) or die "cannot read $ENV{MAP}: $!\n";
      local $/ = "\n";
      our (%exact, %prefix);
      while (<$fh>) {
        next if /^\s*(#|$)/;
        my ($o, $n) = split;
        if ($o =~ s/\.\*$//) { $n =~ s/\.\*$//; $prefix{$o} = $n } else { $exact{$o} = $n }
      }
      close $fh;
      sub path_of { my $m = shift; $m =~ s{\.}{/}g; return $m }
      # longest first, so qmig.apps2.common is tried before qmig.apps2
      my @ex = sort { length($b) <=> length($a) } keys %exact;
      my @px = sort { length($b) <=> length($a) } keys %prefix;
      our $ex_re = join("|", map { quotemeta } @ex);
      our $px_re = join("|", map { quotemeta } @px);
      our %path_exact = map { path_of($_) => path_of($exact{$_}) } @ex;
      our %path_prefix = map { path_of($_) => path_of($prefix{$_}) } @px;
      our $pex_re = join("|", map { quotemeta(path_of($_)) } @ex);
      our $ppx_re = join("|", map { quotemeta(path_of($_)) } @px);
    }
    our (%exact, %prefix, %path_exact, %path_prefix, $ex_re, $px_re, $pex_re, $ppx_re);
    # quoted module names
    s{(\\?["\x27])($ex_re)\1}{$1$exact{$2}$1}g;
    s{(\\?["\x27])($px_re)\.([\w.]+)\1}{$1$prefix{$2}.$3$1}g;
    # file paths
    s{(?<![\w.-])($pex_re)\.lua\b}{$path_exact{$1}.lua}g;
    s{(?<![\w.-])($ppx_re)/([\w/]+)\.lua\b}{$path_prefix{$1}/$2.lua}g;
    if ($ENV{PROSE}) {
      s{(?<![\w.\-/\x27"])($ex_re)(?![\w\-]|\.[\w<*])}{$exact{$1}}g;
      s{(?<![\w.\-/\x27"])($px_re)\.(\w[\w.]*\w|\w)(?![\w\-])}{$prefix{$1}.$2}g;
    }
  ' "$f"
  if [ "$move" = 1 ]; then
    case $f in
      lua/qmig/*.lua|./lua/qmig/*.lua)
        rel=${f#./}
        new=$(printf '%s\n' "$rel" | MAP=$map perl -ne '
          chomp; my $p = $_; my $m = $p; $m =~ s{^lua/}{}; $m =~ s{\.lua$}{}; $m =~ s{/}{.}g;
          open(my $fh, "<", $ENV{MAP}) or die;
          my ($best, $to) = ("", "");
          while (<$fh>) {
            next if /^\s*(#|$)/;
            my ($o, $n) = split;
            if ($o eq $m) { $best = $o; $to = $n; last }
            if ($o =~ s/\.\*$// && index($m, "$o.") == 0 && length($o) > length($best)) {
              $n =~ s/\.\*$//; $best = $o; $to = $n . substr($m, length($o));
            }
          }
          if ($to ne "") { $to =~ s{\.}{/}g; print "lua/$to.lua\n" }')
        if [ -n "$new" ] && [ "$new" != "$rel" ]; then
          mkdir -p "$(dirname "$new")"
          git mv "$rel" "$new"
          echo "moved $rel -> $new"
        fi
        ;;
    esac
  fi
done
