#!/usr/bin/perl
# test/limits_state.pl -- read and write $PGDATA/pg_pii_guard/limits.state
# (the "PGL3" format described in src/limitstate.c), for scenario tests of
# what the export limits persist.  Only while the server is stopped for put.
#
#   perl test/limits_state.pl sum FILE DBOID ROLEID [HOUR]
#       rows of (DBOID, ROLEID) in the window at HOUR (default: now)
#   perl test/limits_state.pl put FILE DBOID ROLEID HOUR:ROWS...
#       replace that day counter's buckets (others are kept)
#   perl test/limits_state.pl v2 FILE DBOID ROLEID HOUR:ROWS GRANT_ID:USED
#       write a state file as pii_guard 0.1 wrote it ("PGL2": raw structs,
#       24 buckets), with one day counter and one approval's use
#   perl test/limits_state.pl hour
#       the current hour number (hours since 2000-01-01 UTC)
use strict;
use warnings;

my $BUCKETS = 25;
my $MAGIC = 0x50474c33;

my @crc_table;
for my $i (0 .. 255) {
	my $c = $i;
	for (1 .. 8) { $c = ($c & 1) ? (($c >> 1) ^ 0x82F63B78) : ($c >> 1); }
	$crc_table[$i] = $c;
}

sub crc32c {
	my ($data) = @_;
	my $crc = 0xFFFFFFFF;
	for my $byte (unpack('C*', $data)) {
		$crc = $crc_table[($crc ^ $byte) & 0xFF] ^ ($crc >> 8);
	}
	return $crc ^ 0xFFFFFFFF;
}

# (days => [[db, role, [[hour, rows] x 25]], ...], grants => raw bytes)
sub load {
	my ($file) = @_;
	my %state = (days => [], grants => '', ngrants => 0);
	open(my $fh, '<:raw', $file) or return \%state;
	local $/;
	my $data = <$fh>;
	close $fh;
	my ($magic, $nday, $ngrant) = unpack('L L L', $data);
	die "not a PGL3 file\n" unless $magic == $MAGIC;
	die "bad checksum\n" unless crc32c(substr($data, 0, -4)) == unpack('L', substr($data, -4));
	my $pos = 12;
	for (1 .. $nday) {
		my @f = unpack('L L ' . ('q q ' x $BUCKETS), substr($data, $pos, 8 + 16 * $BUCKETS));
		$pos += 8 + 16 * $BUCKETS;
		my ($db, $role) = splice(@f, 0, 2);
		my @b;
		push @b, [splice(@f, 0, 2)] while @f;
		push @{ $state{days} }, [$db, $role, \@b];
	}
	$state{grants} = substr($data, $pos, 48 * $ngrant);
	$state{ngrants} = $ngrant;
	return \%state;
}

sub save {
	my ($file, $state) = @_;
	my $data = pack('L L L', $MAGIC, scalar @{ $state->{days} }, $state->{ngrants});
	for my $d (@{ $state->{days} }) {
		$data .= pack('L L', $d->[0], $d->[1]);
		$data .= pack('q q', @$_) for @{ $d->[2] };
	}
	$data .= $state->{grants};
	$data .= pack('L', crc32c($data));
	open(my $fh, '>:raw', "$file.tmp") or die "$file.tmp: $!\n";
	print $fh $data;
	close $fh or die "$file.tmp: $!\n";
	rename("$file.tmp", $file) or die "rename: $!\n";
}

# Hours since PostgreSQL's epoch, 2000-01-01 00:00 UTC, as the server counts them.
my $now = int((time() - 946684800) / 3600);
my ($cmd, $file, $db, $role, @rest) = @ARGV;
if ($cmd eq 'hour') {
	print "$now\n";
} elsif ($cmd eq 'sum') {
	my $at = $rest[0] // $now;
	my $sum = 0;
	for my $d (@{ load($file)->{days} }) {
		next unless $d->[0] == $db && $d->[1] == $role;
		for my $b (@{ $d->[2] }) { $sum += $b->[1] if $b->[0] > $at - $BUCKETS; }
	}
	print "$sum\n";
} elsif ($cmd eq 'put') {
	my $state = load($file);
	my @b = map { [0, 0] } 1 .. $BUCKETS;
	for my $hr (@rest) {
		my ($h, $r) = split /:/, $hr;
		$b[$h % $BUCKETS] = [$h, $r];
	}
	@{ $state->{days} } = grep { !($_->[0] == $db && $_->[1] == $role) } @{ $state->{days} };
	push @{ $state->{days} }, [$db, $role, \@b];
	save($file, $state);
} elsif ($cmd eq 'v2') {
	my ($h, $r) = split /:/, $rest[0];
	my ($grant, $used) = split /:/, $rest[1];
	my @hours = (0) x 24;
	my @rows = (0) x 24;
	($hours[$h % 24], $rows[$h % 24]) = ($h, $r);
	my $data = pack('L l', 0x50474c32, 1) . pack('L L', $db, $role) . pack('q24 q24', @hours, @rows);
	$data .= pack('l', 1) . pack('L x4 q q', $db, $grant, $used);
	open(my $fh, '>:raw', $file) or die "$file: $!\n";
	print $fh $data;
	close $fh or die "$file: $!\n";
} else {
	die "usage: limits_state.pl sum|put|v2|hour ...\n";
}
