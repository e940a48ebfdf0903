FROM rockylinux:9
RUN yum install -y httpd
RUN dnf install -y nginx && dnf clean all
RUN zypper --non-interactive in curl
RUN microdnf install -y jq && microdnf clean all
USER 10001
HEALTHCHECK CMD ["/app", "check"]
