# Finds every listening loopback port and asks each, with the registry's password (AUTH) but
# without its client certificate, for an image only the client-certificate registry holds;
# prints each port that hands it over.
use IO::Socket::INET;
open my $t, "<", "/proc/net/tcp" or exit 0;
<$t>;
my @ports;
while (<$t>) {
    my @f = split;
    push @ports, hex $1 if $f[3] eq "0A" && $f[1] =~ /^0100007F:(\w+)$/;
}
for my $p (@ports) {
    my $line = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 5;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $p, Timeout => 3)
            or die "no connection\n";
        print $s "GET /v2/mtls/probe/manifests/1 HTTP/1.0\r\nHost: $ENV{REG}\r\n"
            . "Authorization: Basic $ENV{AUTH}\r\n"
            . "Accept: application/vnd.oci.image.manifest.v1+json, "
            . "application/vnd.docker.distribution.manifest.v2+json\r\n\r\n";
        my $l = <$s>;
        alarm 0;
        $l;
    };
    print "port $p: $line" if defined $line && $line =~ m{^HTTP/1\.[01] 200};
}
