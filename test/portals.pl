#!/usr/bin/perl
# test/portals.pl -- drive named portals of the extended query protocol,
# which psql cannot: Parse/Bind/Execute with a row limit, interleaved.
#
#   perl test/portals.pl SOCKET_DIR USER DATABASE STEP...
#
# Each STEP is one of
#   parse:NAME:SQL        Parse a named statement
#   bind:PORTAL:NAME      Bind it to a named portal (no parameters)
#   exec:PORTAL:N         Execute the portal for at most N rows (0: all)
#   close:PORTAL          Close the portal
#   query:SQL             a simple Query (e.g. BEGIN)
# then Sync.  Prints one line per Execute: "PORTAL ROWS END", END being
# "suspended", "done", or the SQLSTATE of the error that ended it; steps
# after an error are skipped by the server, as always.  Trust
# authentication only (test clusters).
use strict;
use warnings;
use IO::Socket::UNIX;

my ($dir, $user, $db, @steps) = @ARGV;
my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => "$dir/.s.PGSQL.5432")
  or die "connect: $!\n";

sub send_msg { my ($type, $body) = @_; print $sock $type, pack('N', length($body) + 4), $body; }
sub cstr { return join('', map { "$_\0" } @_); }

sub read_msg {
	my ($hdr, $body) = ('', '');
	read($sock, $hdr, 5) == 5 or die "connection closed\n";
	my ($type, $len) = unpack('a N', $hdr);
	read($sock, $body, $len - 4) if $len > 4;
	return ($type, $body);
}

sub sqlstate {
	my ($body) = @_;
	for my $field (split /\0/, $body) { return substr($field, 1) if substr($field, 0, 1) eq 'C'; }
	return 'unknown';
}

# Startup, protocol 3.0.
my $startup = pack('N', 196608) . cstr('user', $user, 'database', $db) . "\0";
print $sock pack('N', length($startup) + 4), $startup;
while (1) {
	my ($type, $body) = read_msg();
	die "startup failed: " . sqlstate($body) . "\n" if $type eq 'E';
	die "only trust authentication is supported\n" if $type eq 'R' && unpack('N', $body) != 0;
	last if $type eq 'Z';
}

my @executes;
for my $step (@steps) {
	my ($op, @args) = split /:/, $step, 3;
	if ($op eq 'query') {
		my $sql = join(':', @args);
		send_msg('Q', cstr($sql));
		while (1) { my ($type) = read_msg(); last if $type eq 'Z'; }
	} elsif ($op eq 'parse') {
		send_msg('P', cstr($args[0], $args[1]) . pack('n', 0));
	} elsif ($op eq 'bind') {
		send_msg('B', cstr($args[0], $args[1]) . pack('n n n', 0, 0, 0));
	} elsif ($op eq 'exec') {
		send_msg('E', cstr($args[0]) . pack('N', $args[1]));
		push @executes, $args[0];
	} elsif ($op eq 'close') {
		send_msg('C', 'P' . cstr($args[0]));
	} else {
		die "unknown step $step\n";
	}
}
send_msg('S', '');

my $rows = 0;
my $failed = 0;
while (1) {
	my ($type, $body) = read_msg();
	if ($type eq 'D') {
		$rows++;
	} elsif ($type eq 's' || $type eq 'C' || $type eq 'E') {
		next if $type eq 'C' && !@executes;
		my $portal = shift(@executes) // '?';
		my $end = $type eq 's' ? 'suspended' : $type eq 'C' ? 'done' : sqlstate($body);
		print "$portal $rows $end\n" unless $failed;
		$failed = 1 if $type eq 'E';
		$rows = 0;
	} elsif ($type eq 'Z') {
		last;
	}
}
send_msg('X', '');
close $sock;
