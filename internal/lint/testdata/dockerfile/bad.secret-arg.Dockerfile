ARG NPM_TOKEN
FROM node:22.11-alpine
ARG GITHUB_TOKEN=""
ARG awsSecretAccessKey
RUN npm ci
USER node
HEALTHCHECK CMD ["node", "check.js"]
